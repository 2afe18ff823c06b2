"""Notebook habits against the real engine, from the library, the CLI and MCP:
`!command` and `%pip install` lines, `_` and the execution count, `input()`
answered by the caller, display ids and `clear_output` (docs/outputs.md)."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from codeexec import CodeexecError, ContainerSession, InvalidDependency
from tests.conftest import RUN_ID, unique_name
from tests.integration.test_cli_e2e import EXE, codeexec
from tests.integration.test_mcp_stdio import _server

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def nb(docker_engine: None) -> Iterator[ContainerSession]:
    with ContainerSession.start(f"m{RUN_ID}-notebook") as s:
        yield s


# -- !command ------------------------------------------------------------------------------


def test_shell_lines_run_in_the_container_in_order(nb: ContainerSession) -> None:
    r = nb.execute(
        "print('py 1')\n!ls -la /workspace | head -1; whoami\nprint('py 2')\n!exit 4\n_exit_code"
    )
    assert r.ok, r.error
    lines = r.stdout.splitlines()
    assert lines[0] == "py 1" and lines[1].startswith("total") and lines[3] == "py 2"
    assert lines[2] != "root"  # the session's own unprivileged user
    assert r.value == "4"  # a failing command does not raise: its status is in _exit_code
    listing = nb.execute("names = !ls /\n'tmp' in names")
    assert listing.value == "True"


def test_shell_lines_from_the_cli(nb: ContainerSession) -> None:
    done = codeexec("exec", "-s", nb.name, "!echo shell-from-cli\nprint('python')")
    assert (done.returncode, done.stdout) == (0, "shell-from-cli\npython\n"), done.stderr


# -- %pip install --------------------------------------------------------------------------


def test_pip_line_installs_then_the_cell_imports(nb: ContainerSession) -> None:
    before = nb.execute("1").execution_count
    assert before is not None
    r = nb.execute("x = 'kept'\n%pip install -q six\nimport six\n(six.__name__, x)", timeout=600)
    assert r.ok, (r.error, r.stdout, r.stderr)
    assert r.value == "('six', 'kept')"
    assert "Successfully installed six" in r.stdout or "already satisfied" in r.stdout
    assert r.execution_count == before + 1  # the whole cell counts once
    assert nb.install(["six"]).ok
    assert nb.execute("_").execution_count == before + 2  # install() does not count


def test_bad_pip_lines_are_refused_before_anything_runs(nb: ContainerSession) -> None:
    nb.execute("marker = 0")
    with pytest.raises(InvalidDependency, match="not a valid pip requirement"):
        nb.execute("marker = 1\n%pip install 'six; import os'\n")
    with pytest.raises(InvalidDependency, match="package names only"):
        nb.execute("marker = 1\n%pip install --index-url=http://evil six\n")
    assert nb.execute("marker").value == "0"


def test_pip_line_without_network_says_why(docker_engine: None) -> None:
    with ContainerSession.start(unique_name(), network="none") as s:
        with pytest.raises(CodeexecError, match="network 'none'"):
            s.execute("%pip install six")


def test_other_magics_name_what_works(nb: ContainerSession) -> None:
    r = nb.execute("%matplotlib inline")
    assert r.error is not None and r.error.ename == "UsageError"
    assert "%pip install" in r.error.evalue and "!command" in r.error.evalue


# -- _ and execution_count -----------------------------------------------------------------


def test_underscore_and_the_count_in_cli_json(nb: ContainerSession) -> None:
    nb.execute("6 * 7")
    first = codeexec("exec", "-s", nb.name, "--json", "_ + 0")
    second = codeexec("exec", "-s", nb.name, "--json", "__")
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert (one["value"], two["value"]) == ("42", "42")
    assert two["execution_count"] == one["execution_count"] + 1


# -- input() -------------------------------------------------------------------------------


def test_input_answered_by_the_library_handler(nb: ContainerSession) -> None:
    asked: list[str] = []

    def on_input(prompt: str) -> str:
        asked.append(prompt)
        return "Ada"

    r = nb.execute("name = input('Name? ')\nprint('hello', name)", on_input=on_input)
    assert (r.stdout, asked) == ("hello Ada\n", ["Name? "])
    missing = nb.execute("input('Name? ')")
    assert missing.error is not None and missing.error.ename == "EOFError"
    assert "on_input" in missing.error.evalue


def test_cli_answers_input_from_its_terminal(nb: ContainerSession) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [EXE, "exec", "-s", nb.name, "print('got', input('Name? '))"],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        os.write(master, b"Grace\n")  # the terminal holds the line until input() reads it
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert (proc.returncode, out) == (0, "got Grace\n"), err
    assert "Name? " in err  # the prompt goes to stderr: stdout is the code's output


def test_ctrl_c_at_the_cli_prompt_abandons_the_execution(nb: ContainerSession) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [EXE, "exec", "-s", nb.name, "input('Name? ')\nprint('not reached')"],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        assert proc.stderr is not None
        seen, deadline = b"", time.monotonic() + 120
        while b"Name? " not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            seen += os.read(proc.stderr.fileno(), 4096)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    assert proc.returncode == 130 and b"not reached" not in out, seen + err
    assert nb.execute("1 + 1").value == "2"  # the session was left ready


def test_cli_without_a_terminal_says_how(nb: ContainerSession) -> None:
    done = codeexec("exec", "-s", nb.name, "input('x? ')", input="")
    assert done.returncode == 1 and "EOFError" in done.stderr and "on_input" in done.stderr


# -- displays ------------------------------------------------------------------------------


def test_display_updates_and_clear_output(nb: ContainerSession) -> None:
    r = nb.execute(
        "h = display('0%', display_id=True)\n"
        "for p in (50, 100):\n"
        "    h.update(f'{p}%')\n"
        "print('noise')\nclear_output(wait=True)\nprint('done')"
    )
    assert r.ok, r.error
    assert (r.stdout, r.displays) == ("done\n", ())
    kept = nb.execute(
        "h = display('0%', display_id='bar')\nupdate_display('100%', display_id='bar')"
    )
    assert [(d.data["text/plain"], d.display_id) for d in kept.displays] == [("'100%'", "bar")]


# -- MCP -------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_execute_code_speaks_notebook(anyio_backend: str) -> None:
    default = unique_name()
    async with _server(default) as client:
        deadline = time.monotonic() + 600
        while True:
            first = await client.call_tool("execute_code", {"code": "!echo from-shell\n40 + 2"})
            text = str(getattr(first.content[0], "text", ""))
            if not (first.is_error and "still building" in text):
                break
            assert time.monotonic() < deadline, text
        assert not first.is_error, text
        data = first.structured_content
        assert data is not None and data["stdout"] == "from-shell\n"
        second = await client.call_tool("execute_code", {"code": "_ + 1\n"})
        assert second.structured_content is not None
        assert second.structured_content["value"] == "43"
        assert second.structured_content["execution_count"] == data["execution_count"] + 1
        asked = await client.call_tool("execute_code", {"code": "input('x? ')"})
        assert asked.structured_content is not None
        error = asked.structured_content["error"]
        assert error["ename"] == "EOFError" and "put the value in the code" in error["evalue"]
        await client.call_tool("stop_code_executer", {})
