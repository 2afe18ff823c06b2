"""The `codeexec` CLI through Typer's CliRunner: arguments, exit codes, --json, errors.

Docker is tests/fake_docker.py (CODEEXEC_DOCKER), so nothing here needs an engine.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from codeexec import _cli_copy, cli
from codeexec._cli_output import for_terminal
from codeexec.cli import app
from codeexec.models import ResultLimits

FAKE = str(Path(__file__).with_name("fake_docker.py"))
ENGINE_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?\n"
)


def container(
    name: str,
    *,
    status: str = "running",
    deps: tuple[str, ...] = (),
    cid: str = "c1",
    image: str = "codeexec-env:abc",
) -> dict[str, Any]:
    return {
        "Id": cid * (64 // len(cid)),
        "Name": f"/codeexec-{name}-abc123",
        "Image": "sha256:" + "1" * 64,
        "State": {"Status": status, "Running": status == "running"},
        "Config": {
            "Image": image,
            "Env": ["CODEEXEC_TOKEN=secret-token-value"],
            "Labels": {
                "codeexec.managed": "1",
                "codeexec.session": name,
                "codeexec.deps": json.dumps(list(deps)),
                "codeexec.network": "bridge",
                "codeexec.created": "2026-01-01T00:00:00+00:00",
                "codeexec.idle_timeout": "3600.0",
            },
        },
        "NetworkSettings": {"Ports": {}},
    }


@pytest.fixture
def docker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "docker.log"
    monkeypatch.setenv("CODEEXEC_DOCKER", FAKE)
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    for var in ("FAKE_DOCKER_FAIL", "FAKE_DOCKER_STDOUT_PS", "FAKE_DOCKER_STDOUT_CONTAINER"):
        monkeypatch.delenv(var, raising=False)
    return log


def with_containers(monkeypatch: pytest.MonkeyPatch, *containers: dict[str, Any]) -> None:
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_PS", "\n".join(c["Id"] for c in containers))
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_CONTAINER", json.dumps(list(containers)))


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


# -- usage errors: exit 2 -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["exec"],  # no code
        ["exec", "1", "--file", "x.py"],  # code and file
        ["exec", "-s", "bad name!", "1"],  # invalid session name
        ["start", "-d", "numpy; rm -rf /"],  # refused dependency
        ["start", "-d", "--index-url=http://evil"],
        ["start", "-r", "/nonexistent/requirements.txt"],
        ["stop"],  # neither names nor --all
        ["stop", "a", "--all"],
        ["stop", "--prefix", "t"],  # --prefix without --all
        ["cp", "a.txt", "b.txt"],  # no SESSION: side
        ["cp", "s1:a", "s2:b"],  # two SESSION: sides
        ["no-such-command"],
        ["exec", "--timeout", "soon", "1"],
        ["start", "--max-lifetime", "-1"],
    ],
)
def test_usage_errors_exit_2(args: list[str], docker_log: Path) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not any(c[0] == "run" for c in calls(docker_log))  # nothing was started


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--memory", "banana"], "error: --memory: memory 'banana' is not a size"),
        (["--memory", "0"], "error: --memory: memory '0' is too small"),
        (["--cpus", "0"], "error: --cpus: cpus limit 0.0 is not a positive number"),
        (["--pids", "-1"], "error: --pids: pids limit -1 is not a positive whole number"),
        (
            ["--network", "host"],
            "error: --network: network 'host' would give the code the host's own",
        ),
        (
            ["--network", "container:db"],
            "error: --network: network 'container:db' would join another",
        ),
        (
            ["--base-image", "python:3.12 RUN x"],
            "error: --base-image: base image 'python:3.12 RUN x' is not",
        ),
    ],
)
def test_options_that_remove_isolation_exit_2_before_any_docker_call(
    args: list[str], says: str, docker_log: Path
) -> None:
    result = run("start", "s1", *args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert calls(docker_log) == []  # no image lookup, no build, no container


def test_bad_dependency_message_is_one_line(docker_log: Path) -> None:
    result = run("start", "-d", "numpy; rm -rf /")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "numpy; rm -rf /" in result.stderr


# -- Docker and session trouble: exit 3 -------------------------------------------------


def test_engine_down_exits_3_with_hint(docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "all")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", ENGINE_DOWN)
    for args in (["ls"], ["exec", "1"], ["stop", "--all"], ["images"]):
        result = run(*args)
        assert result.exit_code == 3, (args, result.output)
        assert "DOCKER_HOST" in result.stderr
        assert "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_missing_docker_cli_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEEXEC_DOCKER", "no-such-docker-binary")
    result = run("ls")
    assert result.exit_code == 3
    assert "CODEEXEC_DOCKER" in result.stderr


def test_exec_on_unknown_session_says_to_start_it(docker_log: Path) -> None:
    result = run("exec", "-s", "nosuch", "1+1")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert "codeexec start nosuch" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["restart", "nosuch"],
        ["logs", "nosuch"],
        ["cp", "f.txt", "nosuch:f.txt"],
        ["install", "-s", "nosuch", "six"],
    ],
)
def test_other_commands_on_unknown_session_exit_3(
    args: list[str], docker_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.txt").write_text("x")
    result = run(*args)
    assert result.exit_code == 3, result.output
    assert "nosuch" in result.stderr


def test_debug_shows_the_traceback(docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "all")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", ENGINE_DOWN)
    assert "Traceback" in run("--debug", "ls").stderr
    monkeypatch.setenv("CODEEXEC_DEBUG", "1")
    assert "Traceback" in run("ls").stderr


# -- ls, stop, images, gc with recorded containers ------------------------------------------


def test_ls_table_and_json(docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_containers(
        monkeypatch,
        container("alpha", deps=("numpy==2.*", "pandas")),
        container("beta", cid="c2", status="exited"),
    )
    table = run("ls")
    assert table.exit_code == 0
    header, alpha, beta = table.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "STATUS", "DEPENDENCIES"]
    assert header.split()[-2:] == ["ENGINE", "ROUTE"]
    assert alpha.split()[:2] == ["alpha", "running"] and "numpy==2.*, pandas" in alpha
    assert "1h" in alpha and "codeexec-env:abc" in alpha
    assert alpha.split()[-2:] == ["default", "-"]
    assert beta.split()[:2] == ["beta", "exited"] and beta.split()[-2:] == ["default", "-"]
    data = json.loads(run("ls", "--json").stdout)
    assert [s["name"] for s in data] == ["alpha", "beta"]
    assert data[0]["dependencies"] == ["numpy==2.*", "pandas"]
    assert data[0]["engine"] == "default" and data[0]["route"] == ""
    assert "secret-token-value" not in table.output + json.dumps(data)


class _Idle:
    """Stands in for an attached session that has been idle for 42 s."""

    route = "published"

    def idle_seconds(self) -> float:
        return 42.0

    def close(self) -> None:
        pass


def test_ls_idle_time_belongs_to_the_running_container(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A session restarted under the same name: its old, exited container is listed too.
    with_containers(monkeypatch, container("dup"), container("dup", cid="c2", status="exited"))
    monkeypatch.setattr(cli.ContainerSession, "attach", classmethod(lambda cls, n, **kw: _Idle()))
    data = json.loads(run("ls", "--json").stdout)
    assert [(s["status"], s["idle_seconds"]) for s in data] == [("running", 42.0), ("exited", None)]


def test_ls_json_is_an_empty_list_without_sessions(docker_log: Path) -> None:
    result = run("ls", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_stop_names(docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_containers(monkeypatch, container("alpha"), container("beta", cid="c2"))
    result = run("stop", "alpha", "gamma")
    assert result.exit_code == 3  # gamma does not exist, alpha is still stopped
    assert result.stdout.split() == ["alpha"]
    assert "gamma" in result.stderr
    removed = [c for c in calls(docker_log) if c[0] == "rm"]
    assert removed == [["rm", "--force", "c1" * 32]]


def test_stop_all_with_prefix(docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_containers(
        monkeypatch, container("t1-a"), container("t1-b", cid="c2"), container("other", cid="c3")
    )
    result = run("stop", "--all", "--prefix", "t1-")
    assert result.exit_code == 0
    assert result.stdout.split() == ["t1-a", "t1-b"]
    removed = [c for c in calls(docker_log) if c[0] == "rm"]
    assert removed == [["rm", "--force", "c1" * 32, "c2" * 32]]
    everything = run("stop", "--all")
    assert everything.stdout.split() == ["other", "t1-a", "t1-b"]


def test_stop_all_without_sessions_is_fine(docker_log: Path) -> None:
    result = run("stop", "--all")
    assert result.exit_code == 0 and result.stdout == ""


def test_images_json(docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = {
        "ID": "sha256:" + "a" * 64,
        "Repository": "codeexec-env",
        "Tag": "0123",
        "CreatedAt": "2026-01-01 00:00:00 +0000 UTC",
        "Size": "146MB",
    }
    inspect = [
        {
            "Id": row["ID"],
            "Config": {
                "Labels": {
                    "codeexec.image": "1",
                    "codeexec.deps": '["numpy"]',
                    "codeexec.base": "base:1",
                }
            },
        }
    ]
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_IMAGES", json.dumps(row) + "\n")
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_IMAGE", json.dumps(inspect))
    data = json.loads(run("images", "--json").stdout)
    assert data == [
        {
            "tag": "codeexec-env:0123",
            "image_id": row["ID"],
            "dependencies": ["numpy"],
            "base_image": "base:1",
            "created": row["CreatedAt"],
            "size": "146MB",
        }
    ]
    table = run("images").stdout
    assert "codeexec-env:0123" in table and "numpy" in table
    images_call = next(c for c in calls(docker_log) if c[0] == "images")
    assert "label=codeexec.image=1" in images_call


def test_gc_keeps_the_build_cache_unless_all_images(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = container("live")  # runs on image sha256:111…
    with_containers(monkeypatch, used)
    rows = [
        {"ID": used["Image"], "Repository": "codeexec-env", "Tag": "used"},
        {"ID": "sha256:" + "2" * 64, "Repository": "codeexec-env", "Tag": "cached"},
        {"ID": "sha256:" + "3" * 64, "Repository": "<none>", "Tag": "<none>"},
    ]
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_IMAGES", "".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_IMAGE", json.dumps([{"Id": r["ID"]} for r in rows]))
    result = run("gc")
    assert "removed image <none>:<none>" in result.stdout and "cached" not in result.stdout
    assert "kept 1 unused cached image" in result.stderr
    assert ["rmi", "sha256:" + "3" * 64] in calls(docker_log)
    result = run("gc", "--all-images")
    assert "removed image codeexec-env:cached" in result.stdout
    assert ["rmi", "codeexec-env:cached"] in calls(docker_log)
    assert not any(c[0] == "rmi" and "codeexec-env:used" in c for c in calls(docker_log))


def test_gc_dry_run_removes_nothing(docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_containers(monkeypatch, container("dead1", status="exited"), container("live", cid="c2"))
    result = run("gc", "--dry-run")
    assert result.exit_code == 0
    assert "would remove container codeexec-dead1-abc123" in result.stdout
    assert "live" not in result.stdout
    assert not any(c[0] in ("rm", "rmi") for c in calls(docker_log))
    run("gc")
    assert ["rm", "--force", "c1" * 32] in calls(docker_log)


def test_gc_removes_running_sessions_past_their_max_lifetime(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overdue, unlimited, young = (
        container("old"),
        container("forever", cid="c2"),
        container("young", cid="c3"),
    )
    overdue["Config"]["Labels"]["codeexec.max_lifetime"] = "86400.0"  # created in 2026-01
    unlimited["Config"]["Labels"]["codeexec.max_lifetime"] = "0.0"
    young["Config"]["Labels"]["codeexec.max_lifetime"] = "86400.0"
    young["Config"]["Labels"]["codeexec.created"] = datetime.now(timezone.utc).isoformat()
    with_containers(monkeypatch, overdue, unlimited, young)
    result = run("gc", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would remove container codeexec-old-abc123 (session old, running)" in result.stdout
    assert "forever" not in result.stdout and "young" not in result.stdout
    assert not any(c[0] == "rm" for c in calls(docker_log))
    run("gc")
    assert ["rm", "--force", overdue["Id"]] in calls(docker_log)


def test_start_passes_the_max_lifetime_to_the_container(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("start", "x", "--max-lifetime", "90")  # the fake engine never answers: it fails
    argv = next(c for c in calls(docker_log) if c[0] == "run")
    assert "CODEEXEC_MAX_LIFETIME=90.0" in argv and "codeexec.max_lifetime=90.0" in argv
    assert "--init" not in argv


# -- other commands ---------------------------------------------------------------------


def test_version() -> None:
    result = run("version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"codeexec {cli.__version__}"


def test_help_documents_exit_codes() -> None:
    out = run("--help").stdout
    for code in ("124", "130", "3 Docker", "2 usage"):
        assert code in out


def test_no_arguments_prints_help() -> None:
    result = run()
    assert "Usage" in result.output and "exec" in result.output


def test_mcp_calls_serve_with_the_agreed_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    fake = types.ModuleType("codeexec.mcp_server")
    fake.serve = lambda **kw: seen.update(kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "codeexec.mcp_server", fake)
    result = run(
        "mcp", "--persist", "--idle-timeout", "60", "--pool-size", "2", "--build-wait", "5"
    )
    assert result.exit_code == 0, result.output
    defaults = {
        "scope": None,
        "share": [],
        "share_all": False,
        "max_sessions": 4,
        "network": "bridge",
        "memory": "1g",
        "cpus": 1.0,
        "base_image": None,
        "runtime": None,
        "display_limit": 8 * 2**20,
        "max_lifetime": 86400.0,
        "http": None,
    }
    assert seen == {
        "persist": True,
        "idle_timeout": 60.0,
        "pool_size": 2,
        "build_wait": 5.0,
        **defaults,
    }
    run("mcp")
    assert seen == {
        "persist": False,
        "idle_timeout": 3600.0,
        "pool_size": 0,
        "build_wait": 40.0,
        **defaults,
    }
    run(
        "mcp", "--scope", "team.a", "--share", "notes", "--share", "plots", "--share-all",
        "--max-sessions", "2", "--network", "none", "--memory", "512m", "--cpus", "0.5",
        "--base-image", "python:3.12-slim", "--runtime", "runsc",
    )  # fmt: skip
    assert {k: seen[k] for k in defaults} == {
        "scope": "team.a",
        "share": ["notes", "plots"],
        "share_all": True,
        "max_sessions": 2,
        "network": "none",
        "memory": "512m",
        "cpus": 0.5,
        "base_image": "python:3.12-slim",
        "runtime": "runsc",
        "display_limit": 8 * 2**20,
        "max_lifetime": 86400.0,
        "http": None,
    }
    run("mcp", "--display-limit", "1000", "--max-lifetime", "0")
    assert seen["display_limit"] == 1000
    assert seen["max_lifetime"] is None  # 0 = no limit
    run("mcp", "--idle-timeout", "0")
    assert seen["idle_timeout"] is None  # 0 = never
    assert run("mcp", "--http", "127.0.0.1:8765").exit_code == 0
    assert seen["http"] == "127.0.0.1:8765"


@pytest.mark.parametrize(
    "args",
    [
        ("--scope", "a b"),
        ("--scope", "x" * 41),
        ("--share", "../x"),
        ("--max-sessions", "0"),
        ("--http", "localhost:http"),
        ("--http", "127.0.0.1:70000"),
    ],
)
def test_mcp_refuses_bad_reach_options(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    fake = types.ModuleType("codeexec.mcp_server")
    fake.serve = lambda **kw: pytest.fail("served despite a bad option")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "codeexec.mcp_server", fake)
    result = run("mcp", *args)
    assert result.exit_code == 2, result.output


def test_doctor_names_the_fix(monkeypatch: pytest.MonkeyPatch, docker_log: Path) -> None:
    monkeypatch.setenv("CODEEXEC_DOCKER", "no-such-docker-binary")
    result = run("doctor")
    assert result.exit_code == 3
    assert "FAIL docker CLI" in result.stderr and "CODEEXEC_DOCKER" in result.stderr
    monkeypatch.setenv("CODEEXEC_DOCKER", FAKE)
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "version")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", ENGINE_DOWN)
    result = run("doctor")
    assert result.exit_code == 3
    assert "ok   docker CLI" in result.stderr
    assert "FAIL Docker engine" in result.stderr and "DOCKER_HOST" in result.stderr
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "image")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", "Error: No such image: base:x\n")
    monkeypatch.setenv("CODEEXEC_BASE_IMAGE", "base:x")
    result = run("doctor")
    assert "FAIL base image" in result.stderr
    assert "CODEEXEC_BASE_IMAGE" in result.stderr and "`codeexec base-image`" in result.stderr


# -- exec against a scripted session ----------------------------------------------------------


class FakeSession:
    """Stands in for ContainerSession.attach(): replays one scripted result."""

    default_timeout = None

    def __init__(self, result: Any, output: Sequence[tuple[str, str]] = ()) -> None:
        self.result, self.output = result, list(output)
        self.codes: list[str] = []

    def execute(
        self, code: str, *, timeout: float | None = None, on_output: Any = None,
        result_limits: Any = None, env: Any = None, rollback_on_error: bool = False,
        on_input: Any = None,
    ) -> Any:  # fmt: skip
        self.codes.append(code)
        self.rollback = rollback_on_error
        self.on_input = on_input
        self.limits, self.env = result_limits, env
        for name, text in self.output:
            if on_output is not None:
                on_output(name, text)
        return self.result

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(result: Any, output: Sequence[tuple[str, str]] = ()) -> FakeSession:
        fake = FakeSession(result, output)
        monkeypatch.setattr(cli.ContainerSession, "attach", classmethod(lambda cls, n: fake))
        return fake

    return install


def test_exec_prints_streams_then_value(scripted: Any) -> None:
    from codeexec import ExecResult

    fake = scripted(
        ExecResult("ok", stdout="hi", value="10"), [("stdout", "hi"), ("stderr", "warn\n")]
    )
    result = run("exec", "x.sum()")
    assert result.exit_code == 0
    assert result.stdout == "hi\n10\n" and result.stderr == "warn\n"
    assert fake.codes == ["x.sum()"]
    assert fake.limits == ResultLimits()  # the library's defaults


def test_exec_limits_reach_the_session(scripted: Any) -> None:
    from codeexec import ExecResult

    fake = scripted(ExecResult("ok"))
    assert run("exec", "1", "--output-limit", "10", "--display-limit", "2000").exit_code == 0
    assert fake.limits == ResultLimits(output=10, displays=2000)
    assert run("exec", "1", "--display-limit", "-1").exit_code == 2


def test_exec_reads_stdin_and_files(local_engine: Path, tmp_path: Path) -> None:
    assert run("start", "--idle-timeout", "300").exit_code == 0  # the real executor, locally
    assert run("exec", "-", input="x = 1\nprint('from stdin')\n").stdout == "from stdin\n"
    script = tmp_path / "s.py"
    script.write_text("y = x + 1\n")
    assert run("exec", "-f", str(script)).exit_code == 0
    assert run("exec", "y").stdout == "2\n"
    assert run("exec", "-f", str(tmp_path / "missing.py")).exit_code == 2
    assert run("stop", "default").exit_code == 0


def test_start_refuses_other_settings_unless_replace(local_engine: Path) -> None:
    assert run("start", "s1", "--idle-timeout", "300").exit_code == 0
    assert run("exec", "-s", "s1", "x = 5").exit_code == 0
    again = run("start", "s1", "--idle-timeout", "300", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["name"] == "s1"
    refused = run("start", "s1", "--idle-timeout", "300", "--network", "none")
    assert refused.exit_code == 3  # a CodeexecError (docs/cli.md)
    assert "network 'bridge' (asked: 'none')" in refused.stderr and "--replace" in refused.stderr
    assert run("exec", "-s", "s1", "x").stdout == "5\n"  # the running one was left alone
    replaced = run("start", "s1", "--idle-timeout", "300", "--network", "none", "--replace")
    assert replaced.exit_code == 0, replaced.stderr
    assert "NameError" in run("exec", "-s", "s1", "x").stderr  # a new session
    assert run("stop", "s1").exit_code == 0


@pytest.mark.parametrize(
    ("status", "code"), [("ok", 0), ("error", 1), ("timeout", 124), ("interrupted", 130)]
)
def test_exec_exit_status(scripted: Any, status: str, code: int) -> None:
    from codeexec import ExecError, ExecResult

    error = ExecError(
        "ZeroDivisionError",
        "division by zero",
        ("Traceback (most recent call last):", "ZeroDivisionError: division by zero"),
    )
    scripted(ExecResult(status, error=error if status == "error" else None))  # type: ignore[arg-type]
    result = run("exec", "--timeout", "5", "1/0")
    assert result.exit_code == code
    if status == "error":
        assert result.stderr.splitlines() == list(error.traceback)
    if status == "timeout":
        assert "timed out after 5 s" in result.stderr


def test_exec_json_is_one_document(scripted: Any) -> None:
    from codeexec import Display, ExecResult

    scripted(
        ExecResult("error", stdout="x\n", displays=(Display({"image/png": b"\x89PNG"}),)),
        [("stdout", "x\n")],
    )
    result = run("exec", "--json", "1")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == "error" and data["stdout"] == "x\n"
    assert data["displays"] == [{"image/png": "iVBORw=="}]


def test_exec_saves_rich_outputs(scripted: Any, tmp_path: Path) -> None:
    from codeexec import Display, ExecResult

    scripted(
        ExecResult("ok", displays=(Display({"image/png": b"\x89PNG", "text/plain": "<Figure>"}),))
    )
    result = run("exec", "--save-dir", str(tmp_path / "out"), "plot()")
    assert result.exit_code == 0
    saved = tmp_path / "out" / "output-1.png"
    assert saved.read_bytes() == b"\x89PNG"
    assert str(saved) in result.stderr


# -- cp arguments --------------------------------------------------------------------------


def test_plan_copy() -> None:
    up = _cli_copy.plan_copy("data.csv", "s1:")
    assert (up.direction, up.session, up.local, up.remote) == (
        "upload",
        "s1",
        "data.csv",
        "data.csv",
    )
    assert _cli_copy.plan_copy("a/b.txt", "s1:/tmp/").remote == "/tmp/b.txt"
    down = _cli_copy.plan_copy("s1:/workspace/out.png", ".")
    assert (down.direction, down.session, down.remote, down.local) == (
        "download",
        "s1",
        "/workspace/out.png",
        ".",
    )
    assert _cli_copy.plan_copy("./x:y", "s1:z").local == "./x:y"
    assert _cli_copy.remote_display(_cli_copy.plan_copy("f", "s1:f")) == "s1:/workspace/f"
    for bad in (("a", "b"), ("s1:a", "s2:b"), ("s1:", "x")):
        with pytest.raises(ValueError):
            _cli_copy.plan_copy(*bad)


# -- speed and docs ---------------------------------------------------------------------------


def test_exec_path_imports_no_rich_or_mcp() -> None:
    code = (
        "import sys\n"
        "from codeexec import cli\n"
        "try:\n"
        "    cli.app(['exec', '-s', 'nosuch', '1'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(','.join(m for m in ('rich', 'mcp') if m in sys.modules))\n"
    )
    env = {**os.environ, "CODEEXEC_DOCKER": FAKE}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.stdout.strip() == "", out.stderr


def test_cli_docs_are_up_to_date() -> None:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, str(root / "scripts" / "gen_cli_docs.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout == (root / "docs" / "cli.md").read_text(encoding="utf-8"), (
        "docs/cli.md is stale: run `make docs`"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_control_sequences_are_escaped_only_on_a_terminal() -> None:
    text = (
        "t\x1b]0;title\x07 \x1b]52;c;Zm9v\x1b\\ \x1b[2J\x9b6n\x08\x00 \x1b[1;31mred\x1b[0m\r\n\té"
    )
    shown = for_terminal(text, _Terminal())
    assert shown == (
        r"t\x1b]0;title\x07 \x1b]52;c;Zm9v\x1b\ \x1b[2J\x9b6n\x08\x00 "
        "\x1b[1;31mred\x1b[0m\r\n\té"  # colours, line ends, tabs and text stay
    )
    assert for_terminal(text, io.StringIO()) == text  # a pipe gets the exact text


# -- the fast entry point (codeexec._cli_fast) -----------------------------------------


@pytest.mark.parametrize(
    ("args", "plan"),
    [
        (["exec", "-s", "web", "x + 1"], ("web", "x + 1")),
        (["exec", "--session", "web", "-"], ("web", "-")),
        (["exec", "x", "-s", "web"], ("web", "x")),
        (["exec", "print(1)"], ("default", "print(1)")),
        # Everything else is Click's to read (and to report).
        (["exec"], None),
        (["exec", "-s", "web"], None),
        (["exec", "-s", "bad name", "x"], None),
        (["exec", "-s", "-x", "x"], None),
        (["exec", "-sweb", "x"], None),
        (["exec", "--session=web", "x"], None),
        (["exec", "-s", "a", "-s", "b", "x"], None),
        (["exec", "x", "y"], None),
        (["exec", "-1"], None),
        (["exec", "--", "x"], None),
        (["exec", "--json", "x"], None),
        (["exec", "--help"], None),
        (["--debug", "exec", "x"], None),
        (["ls"], None),
        ([], None),
    ],
)
def test_fast_path_takes_only_plain_exec(args: list[str], plan: tuple[str, str] | None) -> None:
    from codeexec._cli_fast import plain_exec

    assert plain_exec(args) == plan


def test_fast_path_leaves_debug_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    from codeexec._cli_fast import plain_exec

    monkeypatch.setenv("CODEEXEC_DEBUG", "0")
    assert plain_exec(["exec", "x"]) is None


@pytest.mark.parametrize(
    "args",
    [
        ["checkpoint", "s1", "../x"],
        ["restore", "s1", "-bad"],
        ["checkpoints", "s1", "--drop", "a b"],
        ["fork", "s1", "bad name!"],
    ],
)
def test_state_commands_refuse_bad_names_before_any_docker_call(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_docker(*_a: object, **_k: object) -> None:
        raise AssertionError("docker was called")

    monkeypatch.setattr("codeexec.session.ContainerSession.attach", no_docker)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
