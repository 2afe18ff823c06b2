"""The one place that runs the docker CLI.

Every call is an argument list (never a shell string) with a timeout; stdout and
stderr are always captured, because under ``codeexec mcp`` our stdout is the MCP
wire. The binary is ``$CODEEXEC_DOCKER`` (default ``docker``), so ``DOCKER_HOST``,
docker contexts and podman work unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from .errors import (
    ContainerStartError,
    DockerError,
    DockerNotAvailable,
    ImageBuildError,
    NoSuchSession,
)
from .models import ImageInfo, Limits, SessionInfo

LABEL_SESSION = "codeexec.session"
LABEL_MANAGED = "codeexec.managed"
LABEL_DEPS = "codeexec.deps"
LABEL_NETWORK = "codeexec.network"
LABEL_CREATED = "codeexec.created"
LABEL_IDLE = "codeexec.idle_timeout"
LABEL_IMAGE = "codeexec.image"
LABEL_BASE = "codeexec.base"
LABEL_POOL = "codeexec.pool"
# An unclaimed warm-pool container is named POOL_CONTAINER_PREFIX + hex; claiming it
# renames it to ``codeexec-<session name>-<6 hex>`` (labels cannot change on a
# running container, so the name carries the session identity: see pool.py).
POOL_CONTAINER_PREFIX = "codeexec_pool_"
_CLAIMED_POOL_NAME = re.compile(r"^codeexec-([A-Za-z0-9][A-Za-z0-9_.-]{0,62})-[0-9a-f]{6}$")
EXECUTOR_PORT = 8888
EXECUTOR_UID = 10001

_QUICK = 30.0  # seconds for calls that answer at once (inspect, ps, rm)


class Command(list[str]):
    """An argument list with helpers that skip unset options."""

    def opt(self, name: str, value: object) -> Command:
        if value is not None:
            self.extend([name, str(value)])
        return self

    def flag(self, name: str, on: bool) -> Command:
        if on:
            self.append(name)
        return self

    def repeat(self, name: str, values: Iterable[object]) -> Command:
        for value in values:
            self.extend([name, str(value)])
        return self


@dataclass(frozen=True)
class RunSpec:
    """Everything ``docker run`` needs to start one session container."""

    image: str
    container_name: str
    labels: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Sequence[str] = ()  # names passed as `-e NAME`, values via our environment
    network: str = "bridge"
    limits: Limits = Limits()
    runtime: str | None = None
    read_only: bool = True
    publish: bool = True
    command: Sequence[str] = ("python", "-m", "codeexec_executor", "serve")
    extra_args: Sequence[str] = ()


def run_argv(spec: RunSpec) -> list[str]:
    """The ``docker run`` arguments for a session: the secure defaults live here."""
    lim = spec.limits
    cmd = Command(["run", "--detach", "--rm", "--init"])
    cmd.opt("--name", spec.container_name)
    cmd.repeat("--label", [f"{k}={v}" for k, v in sorted(spec.labels.items())])
    # Secure defaults (docs/security.md): unprivileged user, no capabilities, no
    # privilege escalation, read-only root, bounded memory, CPU and process count.
    cmd.opt("--user", f"{EXECUTOR_UID}:{EXECUTOR_UID}")
    cmd.opt("--cap-drop", "ALL")
    cmd.opt("--security-opt", "no-new-privileges")
    cmd.flag("--read-only", spec.read_only)
    cmd.opt("--tmpfs", f"/tmp:rw,exec,nosuid,nodev,size={lim.tmp_size},mode=1777")
    cmd.opt(
        "--tmpfs",
        f"/workspace:rw,exec,nosuid,nodev,size={lim.workspace_size},"
        f"uid={EXECUTOR_UID},gid={EXECUTOR_UID},mode=0700",
    )
    cmd.opt("--workdir", "/workspace")
    cmd.opt("--memory", lim.memory).opt("--memory-swap", lim.memory)
    cmd.opt("--cpus", lim.cpus).opt("--pids-limit", lim.pids)
    cmd.opt("--runtime", spec.runtime)
    cmd.opt("--network", spec.network)
    if spec.publish and spec.network != "none":
        cmd.opt("--publish", f"127.0.0.1::{EXECUTOR_PORT}")
    cmd.repeat("--env", [f"{k}={v}" for k, v in sorted(spec.env.items())])
    cmd.repeat("--env", spec.secret_env)
    cmd.extend(spec.extra_args)
    cmd.append(spec.image)
    cmd.extend(spec.command)
    return cmd


def build_argv(
    context_dir: str, tag: str, labels: Mapping[str, str], build_args: Mapping[str, str]
) -> list[str]:
    """The ``docker build`` arguments; ``--force-rm`` so a failed step leaves no container."""
    cmd = Command(["build", "--force-rm", "--tag", tag])
    cmd.repeat("--label", [f"{k}={v}" for k, v in sorted(labels.items())])
    cmd.repeat("--build-arg", [f"{k}={v}" for k, v in sorted(build_args.items())])
    cmd.append(context_dir)
    return cmd


# Recorded stderr fragments -> the error class and what to tell the user.
_CLASSIFY: list[tuple[tuple[str, ...], type[DockerError], str]] = [
    (
        (
            "cannot connect to the docker daemon",
            "error during connect",
            "is the docker daemon running",
            "connection refused",
        ),
        DockerNotAvailable,
        "the Docker engine does not answer: start it (e.g. `dockerd` or Docker Desktop), "
        "or point DOCKER_HOST / `docker context use` at a running one",
    ),
    (
        ("permission denied while trying to connect",),
        DockerNotAvailable,
        "no permission to use the Docker engine: add your user to the `docker` group "
        "or run with access to the docker socket",
    ),
    (
        ("no such container", "no such object"),
        NoSuchSession,
        "the session's container does not exist (stopped, removed, or idle-timed out): "
        "start it again with `codeexec start`",
    ),
    (
        (
            "no such image",
            "pull access denied",
            "repository does not exist",
            "manifest unknown",
            "failed to resolve reference",
        ),
        DockerError,
        "the image is not available locally and cannot be pulled: build a base image "
        "with executor_image/make_base_image.sh or set CODEEXEC_BASE_IMAGE to one you have",
    ),
]


def classify(
    argv: Sequence[str], returncode: int | None, stdout: str, stderr: str, what: str
) -> DockerError:
    """Turn a failed docker call into the most specific ``DockerError`` with a hint."""
    low = stderr.lower()
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {returncode}"
    for needles, cls, hint in _CLASSIFY:
        if any(n in low for n in needles):
            return cls(
                f"{what} failed: {detail} — {hint}",
                argv=argv,
                returncode=returncode,
                stdout=stdout,
                stderr=stderr,
            )
    return DockerError(
        f"{what} failed: {detail}", argv=argv, returncode=returncode, stdout=stdout, stderr=stderr
    )


class RelayProcess:
    """A running ``docker exec -i`` process whose pipes carry protocol frames."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self.stdin: IO[bytes] = proc.stdin
        self.stdout: IO[bytes] = proc.stdout

    def close(self) -> None:
        for pipe in (self.stdin, self.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class Docker:
    """The docker CLI, one method per docker verb; inject a fake one in tests."""

    def __init__(self, binary: str | None = None) -> None:
        self._binary_name = binary or os.environ.get("CODEEXEC_DOCKER") or "docker"
        self._binary: str | None = None
        self._lock = threading.Lock()

    @property
    def binary(self) -> str:
        if self._binary is None:
            found = shutil.which(self._binary_name)
            if found is None:
                raise DockerNotAvailable(
                    f"the docker CLI `{self._binary_name}` was not found on PATH: install "
                    "Docker (or podman), or set CODEEXEC_DOCKER to the CLI's path"
                )
            self._binary = found
        return self._binary

    # -- the subprocess seam --------------------------------------------------
    def _run(
        self,
        args: Sequence[str],
        *,
        timeout: float = _QUICK,
        what: str = "",
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, *args]
        full_env = {**os.environ, **env} if env else None
        try:
            proc = subprocess.run(
                argv,
                input=input,
                capture_output=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
                env=full_env,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise DockerError(
                f"`docker {args[0]}` did not finish within {timeout:.0f} s: the Docker engine "
                "may be overloaded or hung",
                argv=argv,
            ) from exc
        except OSError as exc:
            raise DockerNotAvailable(f"cannot run {argv[0]}: {exc}", argv=argv) from exc
        if check and proc.returncode != 0:
            raise classify(
                argv, proc.returncode, proc.stdout, proc.stderr, what or f"`docker {args[0]}`"
            )
        return proc

    # -- engine ---------------------------------------------------------------
    def version(self, timeout: float = 10.0) -> str:
        """The engine's version; raises ``DockerNotAvailable`` when it does not answer."""
        proc = self._run(
            ["version", "--format", "{{.Server.Version}}"],
            timeout=timeout,
            what="asking the Docker engine for its version",
            check=False,
        )
        if proc.returncode != 0:
            err = classify(
                [self.binary, "version"],
                proc.returncode,
                proc.stdout,
                proc.stderr,
                "reaching the Docker engine",
            )
            if not isinstance(err, DockerNotAvailable):
                err = DockerNotAvailable(
                    err.message, argv=err.argv, returncode=err.returncode, stderr=err.stderr
                )
            raise err
        return proc.stdout.strip()

    # -- images ---------------------------------------------------------------
    def image_exists(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def image_id(self, ref: str) -> str | None:
        """The image's id, or None when no such image exists locally (one call)."""
        proc = self._run(["image", "inspect", "--format", "{{.Id}}", ref], check=False)
        if proc.returncode == 0:
            return proc.stdout.strip()
        low = proc.stderr.lower()
        if "no such image" in low or "no such object" in low:
            return None
        raise classify(
            [self.binary, "image", "inspect", ref],
            proc.returncode,
            proc.stdout,
            proc.stderr,
            f"inspecting image {ref}",
        )

    def build(
        self,
        context_dir: str,
        tag: str,
        *,
        labels: Mapping[str, str],
        build_args: Mapping[str, str],
        timeout: float,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        """Build an image, passing each log line to ``on_line``; keeps the log tail."""
        argv = [self.binary, *build_argv(context_dir, tag, labels, build_args)]
        env = dict(os.environ)
        env.setdefault("DOCKER_BUILDKIT", "0")  # plain Step lines; no buildx needed
        tail: list[str] = []
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                encoding="utf-8",
                errors="replace",
                env=env,
            )
        except OSError as exc:
            raise DockerNotAvailable(f"cannot run {argv[0]}: {exc}", argv=argv) from exc
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                del tail[:-60]
                if on_line is not None:
                    on_line(line)
            returncode = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if returncode != 0:
            log_tail = "\n".join(tail[-40:])
            if not timer.is_alive() and returncode < 0:
                reason = f"did not finish within {timeout:.0f} s"
            else:
                reason = _build_failure_reason(tail)
            err = classify(argv, returncode, "", log_tail, "building the session image")
            if isinstance(err, DockerNotAvailable):
                raise err
            raise ImageBuildError(
                f"building the session image failed: {reason}. Check the dependency names "
                "and versions, and that the package index is reachable; the end of the "
                "build log follows.",
                log_tail=log_tail,
                argv=argv,
                returncode=returncode,
                stderr=log_tail,
            )

    def images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        args = Command(["images", "--no-trunc", "--format", "{{json .}}"])
        args.repeat(
            "--filter", [f"label={k}={v}" if v else f"label={k}" for k, v in labels.items()]
        )
        out = self._run(args).stdout
        refs = [json.loads(line) for line in out.splitlines() if line.strip()]
        if not refs:
            return []
        inspected = self.inspect_images([r["ID"] for r in refs])
        by_id = {i["Id"]: i for i in inspected}
        infos = []
        for ref in refs:
            data = by_id.get(ref["ID"], {})
            img_labels = (data.get("Config") or {}).get("Labels") or {}
            infos.append(
                ImageInfo(
                    tag=f"{ref['Repository']}:{ref['Tag']}",
                    image_id=ref["ID"],
                    dependencies=tuple(json.loads(img_labels.get(LABEL_DEPS, "[]"))),
                    base_image=img_labels.get(LABEL_BASE, ""),
                    created=str(ref.get("CreatedAt", "")),
                    size=str(ref.get("Size", "")),
                )
            )
        return infos

    def inspect_images(self, refs: Sequence[str]) -> list[dict[str, Any]]:
        out = self._run(["image", "inspect", *refs], what="inspecting images").stdout
        result: list[dict[str, Any]] = json.loads(out or "[]")
        return result

    def rmi(self, *refs: str) -> None:
        if refs:
            self._run(["rmi", *refs], what="removing images")

    # -- containers -----------------------------------------------------------
    def run(self, spec: RunSpec, secret_values: Mapping[str, str]) -> str:
        """Start a container; returns its id. Secret values travel only in our env."""
        try:
            proc = self._run(
                run_argv(spec),
                timeout=120,
                env=secret_values,
                what=f"starting container {spec.container_name}",
            )
        except NoSuchSession as exc:  # "no such object" can also mean a missing image
            raise ContainerStartError(exc.message, argv=exc.argv, stderr=exc.stderr) from exc
        except DockerError as exc:
            if isinstance(exc, DockerNotAvailable):
                raise
            raise ContainerStartError(
                exc.message, argv=exc.argv, returncode=exc.returncode, stderr=exc.stderr
            ) from exc
        return proc.stdout.strip()

    def inspect(self, container: str) -> dict[str, Any]:
        out = self._run(
            ["container", "inspect", container], what=f"inspecting container {container}"
        ).stdout
        data: list[dict[str, Any]] = json.loads(out)
        return data[0]

    def ps(self, labels: Mapping[str, str], *, all: bool = True) -> list[SessionInfo]:
        """Containers carrying ``labels`` (an empty value matches any value)."""
        return [parse_inspect(d) for d in self.ps_inspect(labels, all=all)]

    def ps_inspect(self, labels: Mapping[str, str], *, all: bool = True) -> list[dict[str, Any]]:
        """``docker inspect`` of every container carrying ``labels``."""
        # Labels are read from `inspect`, not from `ps`, whose comma-joined label
        # column cannot be split reliably (requirement strings contain commas).
        args = Command(["ps", "--quiet", "--no-trunc"]).flag("--all", all)
        args.repeat(
            "--filter", [f"label={k}={v}" if v else f"label={k}" for k, v in labels.items()]
        )
        ids = self._run(args, what="listing containers").stdout.split()
        if not ids:
            return []
        proc = self._run(["container", "inspect", *ids], check=False)
        # A container may vanish between ps and inspect; inspect still prints the rest.
        data: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
        return data

    def find_session(self, name: str) -> list[dict[str, Any]]:
        """``docker inspect`` of the running containers of session ``name``.

        One ``docker ps`` call when nothing matches (the common case on ``start``):
        the session label, or the name of a claimed pool container, is read from it.
        """
        fmt = "\t".join(
            [
                "{{.ID}}",
                "{{.Names}}",
                '{{.Label "' + LABEL_SESSION + '"}}',
                '{{.Label "' + LABEL_POOL + '"}}',
            ]
        )
        out = self._run(
            ["ps", "--no-trunc", "--filter", f"label={LABEL_MANAGED}=1", "--format", fmt],
            what="listing containers",
        ).stdout
        ids = []
        for line in out.splitlines():
            cid, cname, session, pool = (line.split("\t") + ["", "", "", ""])[:4]
            if session == name or (pool and not session and pool_session_name(cname) == name):
                ids.append(cid)
        if not ids:
            return []
        proc = self._run(["container", "inspect", *ids], check=False)
        data: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
        return data

    def rename(self, container: str, new_name: str) -> None:
        """Rename a container (fails if ``new_name`` is taken or it is gone)."""
        self._run(["rename", container, new_name], what=f"renaming container {container}")

    def rm(self, *containers: str) -> None:
        """Remove containers at once (``rm -f``); missing ones are not an error."""
        if not containers:
            return
        proc = self._run(["rm", "--force", *containers], check=False)
        if proc.returncode != 0 and "no such container" not in proc.stderr.lower():
            raise classify(
                [self.binary, "rm"],
                proc.returncode,
                proc.stdout,
                proc.stderr,
                "removing containers",
            )

    def stop(self, container: str, grace: float = 2.0) -> None:
        self._run(["stop", "--time", str(int(grace)), container], timeout=grace + 30, check=False)

    def kill(self, container: str, signal: str = "KILL") -> None:
        self._run(["kill", "--signal", signal, container], what="killing container")

    def logs(self, container: str, tail: int | None = 200) -> str:
        args = Command(["logs"]).opt("--tail", tail)
        args.append(container)
        proc = self._run(args, what=f"reading the log of {container}")
        return proc.stdout + proc.stderr

    def exec(
        self,
        container: str,
        command: Sequence[str],
        *,
        timeout: float = 60.0,
        user: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        args = Command(["exec"]).opt("--user", user)
        args.append(container)
        args.extend(command)
        return self._run(args, timeout=timeout, check=False)

    def open_relay(self, container: str, command: Sequence[str]) -> RelayProcess:
        """Start ``docker exec -i`` with binary pipes for the exec-relay transport."""
        argv = [self.binary, "exec", "-i", container, *command]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
            )
        except OSError as exc:
            raise DockerNotAvailable(f"cannot run {argv[0]}: {exc}", argv=argv) from exc
        return RelayProcess(proc)


def _build_failure_reason(tail: Sequence[str]) -> str:
    for line in reversed(tail):
        low = line.lower()
        if "no matching distribution" in low or "could not find a version" in low:
            return line.strip()
        if "certificate verify failed" in low:
            return (
                "TLS certificate verification failed inside the build: set "
                "CODEEXEC_CA_BUNDLE to your proxy's CA bundle"
            )
    for line in reversed(tail):
        if line.strip().lower().startswith(("error", "the command")):
            return line.strip()
    return "a build step failed"


def parse_inspect(data: Mapping[str, Any]) -> SessionInfo:
    """A ``docker container inspect`` object as a ``SessionInfo``."""
    config = data.get("Config") or {}
    return _session_info(
        labels=dict(config.get("Labels") or {}),
        container_id=str(data.get("Id", "")),
        container_name=str(data.get("Name", "")).lstrip("/"),
        image=str(config.get("Image", "")),
        status=str((data.get("State") or {}).get("Status", "")),
    )


def published_port(data: Mapping[str, Any]) -> tuple[str, int] | None:
    """The host address and port that the container's executor port is published on."""
    ports = (data.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{EXECUTOR_PORT}/tcp") or []:
        host = binding.get("HostIp") or "127.0.0.1"
        return ("127.0.0.1" if host in ("0.0.0.0", "") else host, int(binding["HostPort"]))
    return None


def container_env(data: Mapping[str, Any]) -> dict[str, str]:
    env = {}
    for item in (data.get("Config") or {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def pool_session_name(container_name: str) -> str:
    """The session name a claimed warm-pool container carries in its name, else ``""``."""
    match = _CLAIMED_POOL_NAME.match(container_name.lstrip("/"))
    return match.group(1) if match else ""


def _session_info(
    *, labels: Mapping[str, str], container_id: str, container_name: str, image: str, status: str
) -> SessionInfo:
    idle = labels.get(LABEL_IDLE)
    name = labels.get(LABEL_SESSION, "")
    if not name and labels.get(LABEL_POOL):
        name = pool_session_name(container_name)
    try:
        deps = tuple(json.loads(labels.get(LABEL_DEPS, "[]")))
    except ValueError:
        deps = ()
    return SessionInfo(
        name=name,
        container_id=container_id,
        container_name=container_name,
        image=image,
        status=status,
        dependencies=deps,
        network=labels.get(LABEL_NETWORK, "bridge"),
        created=labels.get(LABEL_CREATED, ""),
        idle_timeout=float(idle) if idle else None,
        labels=dict(labels),
    )
