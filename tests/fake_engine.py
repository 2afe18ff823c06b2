"""The engine behind ``fake_docker.py`` when ``FAKE_DOCKER_STATE`` names a directory.

Just enough of a Docker engine for ``ContainerSession`` to run without one: ``run``
starts the REAL executor (``executor_image/``) as a local process listening on
127.0.0.1 with the token it was given, and records an inspect object in the state
directory; ``container inspect``, ``ps`` (labels, ``--all``, ``--quiet``,
``--format``), ``rename``, ``rm``, ``kill``, ``logs`` and ``exec -i … relay`` (the
real relay, pointed at that port) read and change that record. Images always
exist. A "container" runs while its executor process lives.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

EXECUTOR_DIR = Path(__file__).resolve().parent.parent / "executor_image"
READY_SECONDS = 60.0


def main(state: Path, args: list[str]) -> int:
    state.mkdir(parents=True, exist_ok=True)
    verb = args[0] if args else ""
    rest = args[1:]
    if verb == "run":
        return _run(state, rest)
    if verb == "container" and rest[:1] == ["inspect"]:
        return _inspect(state, rest[1:])
    if verb == "inspect":
        return _inspect(state, rest)
    if verb == "ps":
        return _ps(state, rest)
    if verb == "rename":
        record = _find(state, rest[0])
        if record is None:
            return _no_such(rest[0])
        record["Name"] = "/" + rest[1]
        _save(state, record)
        return 0
    if verb in ("rm", "kill", "stop"):
        for ref in [a for a in rest if not a.startswith("-") and not a.isdigit()]:
            record = _find(state, ref)
            if record is not None:
                _kill(record)
                if verb == "rm":
                    (state / f"{record['Id']}.json").unlink()
        return 0
    if verb == "logs":
        record = _find(state, rest[-1])
        if record is None:
            return _no_such(rest[-1])
        sys.stdout.write((state / f"{record['Id']}.log").read_text(errors="replace"))
        return 0
    if verb == "exec" and "-i" in rest:
        return _relay(state, rest)
    if verb == "image":
        sys.stdout.write("sha256:" + "e" * 64 + "\n")
        return 0
    if verb == "version":
        sys.stdout.write("20.10.24-fake\n")
        return 0
    sys.stderr.write(f"fake engine: unsupported command {args!r}\n")
    return 1


def _run(state: Path, args: list[str]) -> int:
    labels: dict[str, str] = {}
    env: dict[str, str] = {}
    name = network = ""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        opt = args[i]
        if opt in ("--detach", "-d", "--rm", "--read-only"):
            i += 1
            continue
        value = args[i + 1]
        if opt == "--label":
            key, _, val = value.partition("=")
            labels[key] = val
        elif opt == "--env":
            key, sep, val = value.partition("=")
            env[key] = val if sep else os.environ.get(key, "")
        elif opt == "--name":
            name = value
        elif opt == "--network":
            network = value
        i += 2
    image = args[i]
    cid = secrets.token_hex(32)
    workspace = state / f"{cid}-workspace"
    workspace.mkdir()
    log = state / f"{cid}.log"
    child_env = {
        **os.environ,
        **env,
        "PYTHONPATH": str(EXECUTOR_DIR),
        "CODEEXEC_PORT": "0",
        "CODEEXEC_HOST": "127.0.0.1",
        "CODEEXEC_INTERRUPT_GRACE": "0.5",
        "CODEEXEC_SITE_DIR": str(state / f"{cid}-site"),
    }
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "codeexec_executor", "serve"],
            cwd=workspace, env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err, start_new_session=True,
        )  # fmt: skip
    port = 0
    deadline = time.monotonic() + READY_SECONDS
    while not port and time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"CODEEXEC_LISTENING (\d+)", log.read_text(errors="replace"))
        port = int(found.group(1)) if found else 0
        time.sleep(0.02)
    ports = {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    record = {
        "Id": cid,
        "Name": "/" + (name or cid[:12]),
        "Image": "sha256:" + "e" * 64,
        "Config": {
            "Image": image,
            "Labels": labels,
            "Env": [f"{k}={v}" for k, v in env.items()] + ["PATH=/usr/bin"],
        },
        "State": {"Status": "running", "Running": True, "Pid": proc.pid},
        "NetworkSettings": {"Ports": {} if network == "none" else ports},
        "FakePort": port,
    }
    _save(state, record)
    sys.stdout.write(cid + "\n")
    return 0


def _alive(record: dict) -> bool:
    pid = record["State"].get("Pid") or 0
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (its parent has not reaped it yet) is dead too
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _inspect(state: Path, refs: list[str]) -> int:
    found = [r for r in (_find(state, ref) for ref in refs if not ref.startswith("-")) if r]
    for record in found:
        running = _alive(record)
        record["State"].update(Running=running, Status="running" if running else "exited")
    sys.stdout.write(json.dumps(found) + "\n")
    missing = len(found) < len([r for r in refs if not r.startswith("-")])
    if missing:
        sys.stderr.write("Error: No such object: container\n")
    return 1 if missing else 0


def _ps(state: Path, args: list[str]) -> int:
    filters = [args[i + 1] for i, a in enumerate(args) if a == "--filter"]
    fmt = args[args.index("--format") + 1] if "--format" in args else "{{.ID}}"
    for record in _records(state):
        labels = record["Config"]["Labels"]
        if "--all" not in args and not _alive(record):
            continue
        wanted = [f.removeprefix("label=").partition("=") for f in filters]
        if not all(k in labels and (not sep or labels[k] == v) for k, sep, v in wanted):
            continue
        line = fmt.replace("{{.ID}}", record["Id"]).replace("{{.Names}}", record["Name"][1:])
        line = re.sub(
            r'\{\{\.Label "([^"]+)"\}\}', lambda m, found=labels: found.get(m.group(1), ""), line
        )
        sys.stdout.write(line + "\n")
    return 0


def _relay(state: Path, args: list[str]) -> int:
    """``exec -i [--env K=V] CID python … relay``: the real relay, to the executor's port."""
    rest = [a for a in args if a != "-i"]
    while rest[0] == "--env":
        rest = rest[2:]
    record = _find(state, rest[0])
    if record is None or not _alive(record):
        return _no_such(rest[0])
    env = {**os.environ, "PYTHONPATH": str(EXECUTOR_DIR), "CODEEXEC_TOKEN": ""}
    argv = [sys.executable, "-m", "codeexec_executor", "relay", str(record["FakePort"])]
    os.execve(sys.executable, argv, env)
    return 1  # not reached


def _kill(record: dict) -> None:
    try:
        os.killpg(record["State"]["Pid"], signal.SIGKILL)
    except OSError:
        pass


def _records(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(state.glob("*.json"))]


def _find(state: Path, ref: str) -> dict | None:
    for record in _records(state):
        if record["Id"].startswith(ref) or record["Name"] == "/" + ref:
            return record
    return None


def _save(state: Path, record: dict) -> None:
    tmp = state / f".{record['Id']}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, state / f"{record['Id']}.json")


def _no_such(ref: str) -> int:
    sys.stderr.write(f"Error: No such container: {ref}\n")
    return 1


def remove_all(state: Path) -> None:
    """Kill every executor the fake engine started (a test's teardown)."""
    for record in _records(state) if state.is_dir() else []:
        _kill(record)
