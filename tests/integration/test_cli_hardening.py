"""The `codeexec` executable under attack: hostile output on a terminal, racing starts.

Real processes against the real engine: a pseudo-terminal stands in for the
person's terminal (``pty.openpty``), and several `codeexec start` processes race.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _session_containers
from tests.integration.test_cli_e2e import EXE, codeexec

pytestmark = pytest.mark.docker

# Code whose output would retitle the window (OSC 0/2), fill the clipboard (OSC 52)
# and clear the screen, on stdout, on stderr, in the value's repr and in a traceback.
HOSTILE = r"""
import sys
print('\x1b]0;pwned-title\x07out')
print('\x1b]52;c;ZXZpbA==\x07err', file=sys.stderr)
class Shown:
    def __repr__(self):
        return '\x1b]2;value\x07\x1b[2J\x9b2Jval'
Shown()
"""
RAISES = r"raise ValueError('\x1b]0;tb-title\x07boom')"
RAW = ("\x1b]0;", "\x1b]52;", "\x1b]2;", "\x1b[2J", "\x9b", "\x07")


@pytest.fixture
def session(session_name: str) -> Iterator[str]:
    started = codeexec("start", session_name)
    assert started.returncode == 0, started.stderr
    yield session_name
    codeexec("stop", session_name)


def _on_a_terminal(*args: str, timeout: float = 120) -> tuple[int, str]:
    """Run ``codeexec ARGS`` with stdout and stderr on a pseudo-terminal; what it showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [EXE, *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env={**os.environ}
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        returncode = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return returncode, shown.decode("utf-8", "replace")


def test_escape_sequences_reach_a_terminal_escaped(session: str) -> None:
    code, shown = _on_a_terminal("exec", "-s", session, HOSTILE)
    assert code == 0, shown
    for raw in RAW:
        assert raw not in shown, (raw, shown)
    # Still readable: the sequences are shown as text, the plain output as it was.
    assert r"\x1b]0;pwned-title\x07out" in shown
    assert r"\x1b]52;c;ZXZpbA==\x07err" in shown
    assert r"\x1b]2;value\x07\x1b[2J\x9b2Jval" in shown

    code, shown = _on_a_terminal("exec", "-s", session, RAISES)
    assert code == 1, shown
    assert "\x1b]0;" not in shown and r"ValueError: \x1b]0;tb-title\x07boom" in shown


def test_pipes_and_json_keep_the_exact_bytes(session: str) -> None:
    piped = codeexec("exec", "-s", session, HOSTILE)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "\x1b]0;pwned-title\x07out\n\x1b]2;value\x07\x1b[2J\x9b2Jval\n"
    assert piped.stderr == "\x1b]52;c;ZXZpbA==\x07err\n"
    code, shown = _on_a_terminal("exec", "-s", session, "--json", HOSTILE)
    assert code == 0, shown
    result = json.loads(shown.replace("\r\n", "\n"))
    assert result["stdout"] == "\x1b]0;pwned-title\x07out\n"
    assert result["value"] == "\x1b]2;value\x07\x1b[2J\x9b2Jval"


# Each racer imports codeexec first, then waits for the starting gun, so that their
# `codeexec start` calls really overlap (Python's start-up time would spread them).
RACER = """
import os, sys, time
import codeexec.cli
gun, name = sys.argv[1], sys.argv[2]
while not os.path.exists(gun):
    time.sleep(0.002)
sys.argv = ["codeexec", "start", name]
codeexec.cli.main()
"""


def test_concurrent_starts_of_one_name_make_one_container(
    session_name: str, tmp_path: Path
) -> None:
    gun = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(gun), session_name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        for _ in range(4)
    ]
    try:
        gun.touch()
        results = [(p.wait(timeout=300), *p.communicate()) for p in racers]
        containers = _session_containers("", [session_name])
        assert len(containers) == 1, (containers, results)
        for returncode, stdout, stderr in results:
            assert (returncode, stdout) == (0, f"{session_name}\n"), stderr
    finally:
        for proc in racers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        codeexec("stop", session_name)
