"""Unit tests of shell commands: how a command becomes argv, the request frame, the
CLI's argument mapping (no docker: tests/integration/test_commands.py runs them)."""

from __future__ import annotations

import pytest
import typer

from codeexec import protocol
from codeexec._cli_options import parse_env
from codeexec._commands import _check_env, command_argv
from codeexec.errors import InvalidOption


@pytest.mark.parametrize(
    ("command", "shell", "argv"),
    [
        (["ls", "-la"], None, ["ls", "-la"]),
        (("echo", "$HOME"), False, ["echo", "$HOME"]),
        ("ls *.csv | wc -l", None, ["sh", "-c", "ls *.csv | wc -l"]),
        ("ls *.csv | wc -l", True, ["sh", "-c", "ls *.csv | wc -l"]),
        ("echo '$HOME' \"a b\"", False, ["echo", "$HOME", "a b"]),
    ],
)
def test_command_argv(command, shell, argv) -> None:
    assert command_argv(command, shell) == argv


@pytest.mark.parametrize(
    ("command", "shell", "message"),
    [
        (["ls"], True, "shell=True takes the command as one string"),
        ([], None, "non-empty list of strings"),
        (["ls", 3], None, "non-empty list of strings"),
        ([""], None, "non-empty list of strings"),
        ("   ", None, "the command is empty"),
        ("echo 'unclosed", False, "cannot split"),
    ],
)
def test_bad_commands_are_refused(command, shell, message) -> None:
    with pytest.raises(InvalidOption, match=message):
        command_argv(command, shell)


def test_env_must_map_names_to_strings() -> None:
    assert _check_env({"A": "1"}) == {"A": "1"}
    assert _check_env(None) is None
    for bad in ({"A=B": "x"}, {"": "x"}, {"A": 1}):
        with pytest.raises(InvalidOption, match="env must map"):
            _check_env(bad)  # type: ignore[arg-type]


def test_run_frame_leaves_out_what_is_not_given() -> None:
    assert protocol.run("r1", ["ls"], cwd=None, env=None, timeout=None, output_limit=None) == {
        "op": "run", "id": "r1", "argv": ["ls"], "timeout": None,
    }  # fmt: skip
    full = protocol.run("r2", ["ls"], cwd="d", env={"A": "b"}, timeout=2.5, output_limit=10)
    assert full == {
        "op": "run", "id": "r2", "argv": ["ls"], "timeout": 2.5, "cwd": "d",
        "env": {"A": "b"}, "output_limit": 10,
    }  # fmt: skip


def test_parse_env() -> None:
    assert parse_env(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("A", "=x"):
        with pytest.raises(typer.BadParameter, match="is not KEY=VALUE"):
            parse_env([bad])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sh", "default"], "give the command after `--`"),
        (["sh", "default", "-c", "ls", "--", "ls"], "not both"),
        (["sh", "default", "-e", "NOEQUALS", "--", "ls"], "is not KEY=VALUE"),
        (["sh", "bad name", "--", "ls"], "bad name"),
        (["files", "rm", "default"], "Missing argument"),
    ],
)
def test_cli_usage_errors_come_before_any_docker_call(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from codeexec.cli import app

    monkeypatch.setenv("CODEEXEC_DOCKER", "/nonexistent/docker")  # any docker call fails
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
