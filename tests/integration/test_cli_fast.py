"""The fast `codeexec exec` entry point against the full Typer app, on the real engine.

Each invocation of the table runs twice, as real processes: through the installed
`codeexec` script (``_cli_fast``: Typer only for what it does not recognise) and
through ``codeexec.cli.main`` (always Typer). Both must print the same bytes on
stdout and stderr and exit with the same status.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RUN_ID

pytestmark = pytest.mark.docker

EXE = shutil.which("codeexec", path=str(Path(sys.executable).parent)) or "codeexec"
# The Typer app under the script's own name (Click prints it in usage errors).
TYPER = f"import sys; sys.argv[0] = {EXE!r}; from codeexec.cli import main; main()"
HEAVY = ("typer", "click", "rich")


def _run(argv: list[str], stdin: str | None) -> tuple[int, str, str]:
    proc = subprocess.run(
        argv, input=stdin or "", capture_output=True, text=True, timeout=120, env={**os.environ}
    )
    return proc.returncode, _same(proc.stdout), _same(proc.stderr)


def _same(text: str) -> str:
    """Without what differs between two runs of one code: cell numbers, durations and
    execution counts."""
    text = re.sub(r"<cell-[0-9]+>", "<cell-N>", text)
    text = re.sub(r'"execution_count": [0-9]+', '"execution_count": N', text)
    return re.sub(r'"duration_ms": [0-9.]+', '"duration_ms": D', text)


@pytest.fixture(scope="module")
def live(docker_engine: None) -> Iterator[str]:
    name = f"m{RUN_ID}-fast"  # module-wide: not one test's container
    started = subprocess.run([EXE, "start", name], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    yield name
    subprocess.run([EXE, "stop", name], capture_output=True, timeout=120)


# (arguments with {s} for the session, stdin, expected exit status)
TABLE: list[tuple[list[str], str | None, int]] = [
    (["exec", "-s", "{s}", "print('hi'); 40 + 2"], None, 0),
    (["exec", "--session", "{s}", "import sys; sys.stderr.write('e\\n'); 'v'"], None, 0),
    (["exec", "print('code first')", "-s", "{s}"], None, 0),
    (["exec", "-s", "{s}", "-"], "print(3)\nx_fast = 4\nx_fast\n", 0),
    (["exec", "-s", "{s}", "def f():\n    return 1/0\nf()"], None, 1),
    (["exec", "-s", "{s}", "print('\\x1b]0;title\\x07out', end='')"], None, 0),
    (["exec", "-s", "{s}", "'\\x1b[2Jvalue'"], None, 0),
    (["exec", "-s", "{s}", "import sys; sys.stdout.write('no newline'); 5"], None, 0),
    (["exec", "-s", "{s}", "raise KeyboardInterrupt"], None, 130),
    (["exec", "-s", "no-such-{s}", "pass"], None, 3),
    (["exec", "-s", "bad name!", "pass"], None, 2),
    (["exec", "-s", "-s", "pass"], None, 2),
    (["exec", "-s", "{s}"], None, 2),
    (["exec", "-s", "{s}", "1", "2"], None, 2),
    (["exec", "-s", "{s}", "-1"], None, 2),
    (["exec", "-s", "{s}", "-s", "{s}", "pass"], None, 0),
    (["exec", "-s", "{s}", "--json", "1 + 1"], None, 0),
    (["exec", "-s", "{s}", "--output-limit", "3", "print('abcdef')"], None, 0),
]


@pytest.mark.parametrize(("args", "stdin", "status"), TABLE, ids=lambda v: repr(v)[:40])
def test_fast_path_and_typer_print_and_exit_alike(
    live: str, args: list[str], stdin: str | None, status: int
) -> None:
    argv = [a.format(s=live) for a in args]
    fast = _run([EXE, *argv], stdin)
    typer = _run([sys.executable, "-c", TYPER, *argv], stdin)
    assert fast == typer
    assert fast[0] == status, fast


def _fast(*args: str) -> subprocess.CompletedProcess[str]:
    """``_cli_fast.main`` with ``args``; stderr ends with its status and what it loaded."""
    code = (
        "import sys\n"
        f"sys.argv = [{EXE!r}, *{list(args)!r}]\n"
        "from codeexec._cli_fast import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    status = exc.code\n"
        f"print(status, [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_plain_exec_loads_no_typer_click_or_rich(live: str) -> None:
    done = _fast("exec", "-s", live, "6 * 7")
    assert (done.stdout, done.stderr) == ("42\n", "0 []\n")


def test_ls_loads_no_typer_click_or_rich_and_matches_typer(live: str) -> None:
    done = _fast("ls", "--json")
    assert done.stderr == "0 []\n"
    mine = [s for s in json.loads(done.stdout) if s["name"] == live]
    assert len(mine) == 1 and mine[0]["status"] == "running"
    assert mine[0]["idle_seconds"] is not None  # it was asked, over its own connection
    table = _run([EXE, "ls"], None)
    typer = _run([sys.executable, "-c", TYPER, "ls"], None)
    assert table[0] == typer[0] == 0
    assert table[1].splitlines()[0] == typer[1].splitlines()[0]  # the same columns
    assert any(line.split()[:2] == [live, "running"] for line in table[1].splitlines())
