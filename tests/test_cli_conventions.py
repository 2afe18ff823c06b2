"""The CLI's conventions (issue 15): global options anywhere, --json everywhere, usage
errors that name the parameter, exec's stdin and auto-start, logs, start's options.

Docker is tests/fake_docker.py (CODEEXEC_DOCKER) or, with ``local_engine``, the fake
engine running the real executor locally: nothing here needs a Docker engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from codeexec import SessionOptions, cli, protocol
from codeexec._cli_argv import normalize, wants_json
from codeexec._cli_fast import plain_exec
from codeexec.cli import app
from codeexec.errors import InvalidOption
from tests.test_cli import ENGINE_DOWN, FAKE, calls, container, with_containers

NOT_MCP = sorted(set(typer.main.get_command(app).commands) - {"mcp"})  # type: ignore[attr-defined]


@pytest.fixture
def docker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "docker.log"
    monkeypatch.setenv("CODEEXEC_DOCKER", FAKE)
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no remembered addresses
    for var in ("FAKE_DOCKER_FAIL", "FAKE_DOCKER_STDOUT_PS", "FAKE_DOCKER_STDOUT_CONTAINER"):
        monkeypatch.delenv(var, raising=False)
    return log


def with_session(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """One running session ``name``, as ``docker ps --format`` of ``find_session`` lists it."""
    found = container(name)
    with_containers(monkeypatch, found)
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_PS", f"{found['Id']}\tcodeexec-{name}-abc123\t{name}\t")


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


def main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """``codeexec ARGS`` through the console entry point (cli.main, which reorders them)."""
    monkeypatch.setattr(sys, "argv", ["codeexec", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err


# -- global options anywhere ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "normal"),
    [
        (["start", "x", "--debug"], ["--debug", "start", "x"]),
        (["exec", "--version"], ["--version", "exec"]),
        (["--json", "ls"], ["ls", "--json"]),
        (["--debug", "--json", "gc", "--dry-run"], ["--debug", "gc", "--json", "--dry-run"]),
        (["exec", "-s", "a", "--", "--debug"], ["exec", "-s", "a", "--", "--debug"]),
        (["ls", "--json"], ["ls", "--json"]),
    ],
)
def test_normalize_puts_options_where_click_reads_them(args: list[str], normal: list[str]) -> None:
    assert normalize(args) == normal
    assert wants_json(args) == (
        "--json" in normal[: normal.index("--") if "--" in normal else None]
    )


def test_debug_after_the_command_works(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "all")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", ENGINE_DOWN)
    status, _, err = main(monkeypatch, capsys, "start", "s1", "--debug")  # as doctor's hint says
    assert status == 3 and "Traceback" in err and "DockerNotAvailable" in err


def test_version_and_h_anywhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from codeexec import __version__

    assert main(monkeypatch, capsys, "exec", "--version")[:2] == (0, f"codeexec {__version__}\n")
    status, out, _ = main(monkeypatch, capsys, "stop", "-h")
    assert status == 0 and out.startswith("Usage: codeexec stop [OPTIONS] [NAME...]")
    assert run("-h").stdout.startswith("Usage:")


# -- --json on every command, and one JSON document on failure ----------------------------


@pytest.mark.parametrize("command", NOT_MCP)
def test_every_command_takes_json_and_shows_an_example(command: str) -> None:
    shown = run(command, "--help").stdout
    example = shown.split("Example:\n    ")[1].splitlines()[0]
    assert "--json" in shown and "codeexec " in example


def test_mcp_help_has_an_example_too() -> None:  # its stdout is the MCP wire: no --json
    assert "Example:\n    codeexec mcp " in run("mcp", "--help").stdout


def test_failure_with_json_is_one_error_document(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = main(monkeypatch, capsys, "exec", "-s", "nosuch", "--json", "1")
    assert status == 3
    error = json.loads(out)["error"]  # exactly one document: json.loads reads all of stdout
    assert error["type"] == "NoSuchSession" and error["exit_status"] == 3
    assert "`codeexec start nosuch`" in error["message"] and "error: no running" in err


def test_usage_error_with_json_is_one_error_document(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = main(monkeypatch, capsys, "--json", "stop")
    assert status == 2
    error = json.loads(out)["error"]
    assert error == {
        "type": "UsageError",
        "message": "Invalid value for 'NAME...' / '--all' / '--prefix': name sessions to "
        "stop, or give --all (with --prefix)",
        "exit_status": 2,
    }
    assert "Usage: codeexec stop" in err and not calls(docker_log)


def test_json_results_of_the_other_commands(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_containers(monkeypatch, container("s1"))
    stopped = run("stop", "s1", "nosuch", "--json")
    assert stopped.exit_code == 3  # one name was missing: the same status as without --json
    assert json.loads(stopped.stdout) == {"stopped": ["s1"], "missing": ["nosuch"]}
    assert json.loads(run("version", "--json").stdout)["version"]
    gc = run("gc", "--dry-run", "--json")
    assert gc.exit_code == 0 and json.loads(gc.stdout)["dry_run"] is True
    with_session(monkeypatch, "s1")
    logs = run("logs", "s1", "--json")
    assert logs.exit_code == 0 and json.loads(logs.stdout) == {"name": "s1", "log": ""}
    doctor = run("doctor", "--json")
    checks = json.loads(doctor.stdout)
    assert set(checks) == {"ok", "checks"} and {"name", "ok", "detail", "fix"} <= set(
        checks["checks"][0]
    )


# -- ls -q and --format ---------------------------------------------------------------------


def test_ls_quiet_and_format(docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_containers(monkeypatch, container("s1"), container("s2", status="exited", cid="c2"))
    assert run("ls", "-q").stdout == "s1\ns2\n"
    shown = run("ls", "--format", "{name}={status} {dependencies}")
    assert shown.exit_code == 0 and shown.stdout == "s1=running []\ns2=exited []\n"


def test_ls_format_with_an_unknown_field_exits_2_before_any_docker_call(docker_log: Path) -> None:
    result = run("ls", "--format", "{name} {colour}")
    assert result.exit_code == 2
    assert "error: --format: {colour} is not a session field" in result.stderr
    assert not calls(docker_log)


# -- usage errors name the parameter; CLI words, not Python calls ----------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["exec"], "Invalid value for 'CODE': no code to run: stdin was empty"),
        (["exec", "1", "-f", "x.py"], "Invalid value for 'CODE' / '--file': give CODE or --file"),
        (["stop"], "Invalid value for 'NAME...' / '--all' / '--prefix'"),
        (["cp", "a.txt", "b.txt"], "Invalid value for 'SRC' / 'DST'"),
        (["logs", "--tail", "some"], "Invalid value for '--tail': 'some' is not a number"),
        (["start", "-e", "NOVALUE"], "Invalid value for '--env': 'NOVALUE' is not KEY=VALUE"),
        (["start", "--idle-timeout", "-5"], "error: --idle-timeout: idle_timeout must be >= 0"),
        (["start", "--runtime", "a b"], "error: --runtime: runtime 'a b' is not a docker runtime"),
        (["start", "-e", "CODEEXEC_TOKEN=x"], "error: --env: environment variable name 'CODEEXEC_"),
        (["start", "-e", "1X=y"], "error: --env: environment variable name '1X' is refused"),
        (["start", "--transport", "pigeon"], "error: --transport: transport 'pigeon' is not one"),
    ],
)
def test_usage_errors_name_the_parameter_before_any_docker_call(
    args: list[str], says: str, docker_log: Path
) -> None:
    result = run(*args, input="")
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.stderr.split())
    assert not calls(docker_log)


def test_messages_use_cli_words_not_python_calls(docker_log: Path) -> None:
    result = run("exec", "-s", "nosuch", "1")
    assert result.exit_code == 3
    assert "`codeexec start nosuch`" in result.stderr and "ContainerSession" not in result.stderr


def test_the_library_message_keeps_its_python_call() -> None:
    from codeexec import ContainerSession, NoSuchSession

    with pytest.raises(NoSuchSession, match=r"ContainerSession\.start\('nosuch'\)"):
        ContainerSession.attach("nosuch", docker=_NoSessions())  # type: ignore[arg-type]


class _NoSessions:
    engine = ""

    def find_session(self, name: str, *, all: bool = False) -> list[Any]:
        return []


# -- exec: piped stdin, and the default session started -------------------------------------


@pytest.mark.parametrize(
    ("args", "piped", "plan"),
    [
        (["exec", "-s", "web"], True, ("web", "-")),
        (["exec"], True, ("default", "-")),
        (["exec", "-s", "web"], False, None),  # a terminal: Typer says what is missing
        (["exec", "x"], True, ("default", "x")),
    ],
)
def test_fast_path_reads_piped_stdin(args: list[str], piped: bool, plan: Any) -> None:
    assert plain_exec(args, piped=piped) == plan


def test_exec_reads_piped_stdin_and_starts_only_the_default_session(local_engine: Path) -> None:
    other = run("exec", "-s", "other", "1")
    assert other.exit_code == 3 and "`codeexec start other`" in other.stderr
    first = run("exec", input="x = 41\nprint(x + 1)\n")  # no session yet: "default" starts
    assert first.exit_code == 0, first.stderr
    assert first.stdout == "42\n" and "started session 'default'" in first.stderr
    again = run("exec", "x")
    assert (again.exit_code, again.stdout, again.stderr) == (0, "41\n", "")  # no second start
    assert run("stop", "default").exit_code == 0


# -- logs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "tail"),
    [([], ["--tail", "200"]), (["--tail", "0"], ["--tail", "0"]), (["--tail", "all"], [])],
)
def test_logs_tail_as_in_docker(
    args: list[str], tail: list[str], docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_session(monkeypatch, "s1")
    assert run("logs", "s1", *args).exit_code == 0
    assert calls(docker_log)[-1] == ["logs", *tail, "c1" * 32]


def test_logs_follow(docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_session(monkeypatch, "s1")
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_LOGS", "CODEEXEC_LISTENING 8888")
    result = run("logs", "-f", "--tail", "0", "s1")
    assert result.exit_code == 0 and result.stdout == "CODEEXEC_LISTENING 8888"
    assert calls(docker_log)[-1] == ["logs", "--tail", "0", "--follow", "c1" * 32]
    assert run("logs", "-f", "--json", "s1").exit_code == 2  # a stream is not one document


def test_reset_is_the_one_name_and_restart_its_alias() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert {"reset", "restart"} <= set(commands)
    assert commands["reset"].callback is not None
    assert "The same as reset" in run("--help").stdout
    assert "the API calls it reset()" in run("restart", "--help").stdout


# -- help: summaries, usage lines -----------------------------------------------------------


def test_summaries_are_not_cut_at_80_columns() -> None:
    shown = CliRunner().invoke(app, ["--help"], terminal_width=80).stdout
    listed = shown.split("Commands:")[1].split("\n\n")[0].splitlines()
    assert len(listed) >= len(NOT_MCP) and not any(line.endswith("...") for line in listed)


def test_usage_lines_show_repeatable_arguments() -> None:
    assert "Usage: root stop [OPTIONS] [NAME...]" in run("stop", "--help").stdout
    assert "Usage: root install [OPTIONS] {PACKAGE...}" in run("install", "--help").stdout


# -- shell completion -----------------------------------------------------------------------


def test_session_names_complete_in_the_shell(tmp_path: Path) -> None:
    sessions = [container("alpha"), container("beta", cid="c2")]
    env = {
        **os.environ, "CODEEXEC_DOCKER": FAKE, "FAKE_DOCKER_LOG": str(tmp_path / "log"),
        "FAKE_DOCKER_STDOUT_PS": "\n".join(c["Id"] for c in sessions),
        "FAKE_DOCKER_STDOUT_CONTAINER": json.dumps(sessions),
        "_CODEEXEC_COMPLETE": "complete_bash", "COMP_WORDS": "codeexec exec -s a",
        "COMP_CWORD": "3",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "codeexec"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.split() == ["alpha"], done.stderr


# -- start maps every option onto SessionOptions ------------------------------------------


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    seen: dict[str, Any] = {}

    class Started:
        name = "s1"

        def close(self) -> None:
            pass

    def start(cls: Any, name: str, options: SessionOptions, **kwargs: Any) -> Started:
        seen.update(name=name, options=options, **kwargs)
        return Started()

    monkeypatch.setattr(cli.ContainerSession, "start", classmethod(start))
    yield seen


def test_start_passes_every_option(started: dict[str, Any]) -> None:
    result = run(
        "start", "s1", "--timeout", "5", "--output-limit", "10", "--no-read-only",
        "--transport", "exec", "-e", "A=1", "--env", "B=x=y", "-e", "C=", "--replace",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    options = started["options"]
    assert (options.timeout, options.output_limit, options.read_only) == (5, 10, False)
    assert options.transport == "exec" and started["replace"] is True
    assert options.env == {"A": "1", "B": "x=y", "C": ""}


# -- the library: env, and the settings checked before any build --------------------------


def test_session_env_is_compared_by_digest_never_by_value() -> None:
    options = SessionOptions(env={"API_KEY": "s3cret-value"})
    recorded = options.container_settings()["env"]
    assert recorded.startswith("API_KEY:") and "s3cret" not in recorded
    assert SessionOptions(env={"API_KEY": "other"}).container_settings()["env"] != recorded
    assert (
        SessionOptions(env={}).env is None and SessionOptions().container_settings()["env"] is None
    )


@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        ({"idle_timeout": -1}, "idle_timeout"),
        ({"idle_timeout": "soon"}, "idle_timeout"),
        ({"runtime": "run c"}, "runtime"),
        ({"env": {"A-B": "1"}}, "env"),
        ({"env": {"A": 1}}, "env"),
        ({"env": ["A=1"]}, "env"),
        ({"memory": "banana"}, "memory"),
        ({"network": "host"}, "network"),
        ({"max_lifetime": -1}, "max_lifetime"),
    ],
)
def test_invalid_options_name_themselves(overrides: dict[str, Any], option: str) -> None:
    with pytest.raises(InvalidOption) as raised:
        SessionOptions.of(**overrides)
    assert raised.value.option == option


def test_exec_frame_carries_env_only_when_given() -> None:
    assert "env" not in protocol.exec_("c1", "1", None, None)
    assert protocol.exec_("c1", "1", None, None, env={"A": "1"})["env"] == {"A": "1"}


def test_attach_defaults_to_the_recorded_timeout_and_output_limit(local_engine: Path) -> None:
    from codeexec import ContainerSession

    with ContainerSession.start("rec", timeout=7, output_limit=99, idle_timeout=300) as s:
        attached = ContainerSession.attach("rec")
        attached.close()
        assert (attached.default_timeout, attached.output_limit) == (7, 99)
        given = ContainerSession.attach("rec", timeout=1)
        given.close()
        assert given.default_timeout == 1
        assert s.execute("import os; os.environ.get('X')", env={"X": "y"}).value == "'y'"


def test_cp_json_is_one_document(local_engine: Path, tmp_path: Path) -> None:
    assert run("start", "files", "--idle-timeout", "300").exit_code == 0
    (tmp_path / "a.txt").write_text("hello")
    copied = run("cp", str(tmp_path / "a.txt"), "files:a.txt", "--json")
    assert copied.exit_code == 0, copied.stderr
    done = json.loads(copied.stdout)
    assert done["size"] == 5 and done["plan"]["direction"] == "upload"
    assert run("stop", "files").exit_code == 0
