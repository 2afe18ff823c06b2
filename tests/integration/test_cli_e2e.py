"""The installed `codeexec` executable against the real Docker engine (issue #3).

Only sessions named by this module are touched: other test runs share the engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RUN_ID, unique_name

pytestmark = pytest.mark.docker

EXE = shutil.which("codeexec", path=str(Path(sys.executable).parent)) or "codeexec"


def codeexec(
    *args: str, input: str | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ},
    )


@pytest.fixture(scope="module")
def shared(docker_engine: None) -> Iterator[str]:
    name = f"m{RUN_ID}-cli"
    started = codeexec("start", name)
    assert started.returncode == 0, started.stderr
    assert started.stdout == f"{name}\n"
    yield name
    codeexec("stop", name)


def test_state_persists_across_invocations(shared: str) -> None:
    first = codeexec("exec", "-s", shared, "import math; x = 41")
    assert (first.returncode, first.stdout) == (0, "")
    second = codeexec("exec", "-s", shared, "x + 1")
    assert (second.returncode, second.stdout) == (0, "42\n")
    streamed = codeexec(
        "exec", "-s", shared, "import sys; print('out'); print('err', file=sys.stderr); x"
    )
    assert streamed.stdout == "out\n41\n" and streamed.stderr == "err\n"


def test_code_from_stdin_and_file(shared: str, tmp_path: Path) -> None:
    piped = codeexec("exec", "-s", shared, "-", input="y = 7\nprint(y * 2)\n")
    assert (piped.returncode, piped.stdout) == (0, "14\n")
    script = tmp_path / "script.py"
    script.write_text("y += 1\ny\n")
    from_file = codeexec("exec", "-s", shared, "-f", str(script))
    assert (from_file.returncode, from_file.stdout) == (0, "8\n")


def test_error_exits_1_with_traceback_on_stderr(shared: str) -> None:
    result = codeexec("exec", "-s", shared, "def f():\n    return 1/0\nf()")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert "return 1/0" in result.stderr


def test_timeout_exits_124_and_keeps_state(shared: str) -> None:
    codeexec("exec", "-s", shared, "kept = 'yes'")
    result = codeexec("exec", "-s", shared, "--timeout", "1", "while True: pass")
    assert result.returncode == 124
    assert "timed out" in result.stderr
    assert codeexec("exec", "-s", shared, "kept").stdout == "'yes'\n"


def test_json_outputs_parse(shared: str) -> None:
    result = codeexec("exec", "-s", shared, "--json", "print('hi'); 6 * 7")
    data = json.loads(result.stdout)
    assert (data["status"], data["stdout"], data["value"]) == ("ok", "hi\n", "42")
    failed = codeexec("exec", "-s", shared, "--json", "raise KeyError('k')")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"]["ename"] == "KeyError"
    again = codeexec("start", shared, "--json")  # idempotent: the same session
    assert again.returncode == 0 and json.loads(again.stdout)["name"] == shared
    listed = json.loads(codeexec("ls", "--json").stdout)
    mine = next(s for s in listed if s["name"] == shared)
    assert isinstance(mine["idle_seconds"], float) and mine["idle_seconds"] >= 0
    assert isinstance(json.loads(codeexec("images", "--json").stdout), list)


def test_ls_table(shared: str) -> None:
    result = codeexec("ls")
    assert result.returncode == 0
    row = next(line for line in result.stdout.splitlines() if line.startswith(shared + " "))
    assert row.split()[1] == "running" and "codeexec-env:" in row


def test_cp_both_ways(shared: str, tmp_path: Path) -> None:
    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n")
    up = codeexec("cp", str(source), f"{shared}:")
    assert up.returncode == 0, up.stderr
    assert codeexec("exec", "-s", shared, "open('data.csv').read()").stdout == "'a,b\\n1,2\\n'\n"
    codeexec("exec", "-s", shared, "open('out.txt', 'w').write('result')")
    down = codeexec("cp", f"{shared}:out.txt", str(tmp_path))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "out.txt").read_text() == "result"
    missing = codeexec("cp", f"{shared}:/workspace/nope.txt", str(tmp_path))
    assert missing.returncode == 3 and "nope.txt" in missing.stderr


def test_install_streams_pip_output(shared: str) -> None:
    result = codeexec("install", "-s", shared, "six", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "six" in result.stdout
    assert codeexec("exec", "-s", shared, "import six; six.__name__").stdout == "'six'\n"


def test_logs_and_gc_dry_run(shared: str) -> None:
    assert codeexec("logs", shared).returncode == 0
    assert codeexec("gc", "--dry-run").returncode == 0  # never a real gc: the engine is shared


def test_gc_finds_idle_sessions(shared: str) -> None:
    assert codeexec("exec", "-s", shared, "1").returncode == 0
    deadline = time.monotonic() + 20
    while True:  # dry runs only: other tests' sessions share this engine
        result = codeexec("gc", "--dry-run", "--idle-for", "1")
        assert result.returncode == 0, result.stderr
        if f"(session {shared}, running)" in result.stdout:
            break
        assert time.monotonic() < deadline, result.stdout
        time.sleep(0.2)
    busy = codeexec("gc", "--dry-run", "--idle-for", "3600")
    assert f"(session {shared}," not in busy.stdout


def test_unknown_session_exits_3() -> None:
    result = codeexec("exec", "-s", unique_name(), "1")
    assert result.returncode == 3
    assert "codeexec start" in result.stderr and "Traceback" not in result.stderr


def test_restart_and_stop_several() -> None:
    a, b = unique_name(), unique_name()
    try:
        for name in (a, b):
            assert codeexec("start", name, "--idle-timeout", "600").returncode == 0
        codeexec("exec", "-s", a, "z = 1")
        assert codeexec("restart", a).returncode == 0
        assert codeexec("exec", "-s", a, "z").returncode == 1  # NameError: fresh process
        stopped = codeexec("stop", a, b)
        assert stopped.returncode == 0 and stopped.stdout.split() == sorted([a, b])
        names = {s["name"] for s in json.loads(codeexec("ls", "--json").stdout)}
        assert not names & {a, b}
    finally:
        codeexec("stop", a, b)


def test_stop_all_with_prefix_touches_only_matching_sessions() -> None:
    prefix = f"{unique_name()}-"
    mine = [prefix + "1", prefix + "2"]
    for name in mine:
        assert codeexec("start", name).returncode == 0
    result = codeexec("stop", "--all", "--prefix", prefix)
    assert result.returncode == 0 and result.stdout.split() == mine


def test_ctrl_c_interrupts_and_exits_130(shared: str) -> None:
    import signal

    codeexec("exec", "-s", shared, "survivor = 5")
    proc = subprocess.Popen(
        [EXE, "exec", "-s", shared, "import time\nprint('go', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "go\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert codeexec("exec", "-s", shared, "survivor").stdout == "5\n"  # the namespace survived


def test_doctor_passes() -> None:
    result = codeexec("doctor")
    assert result.returncode == 0, result.stderr
    assert "ok   session handshake" in result.stderr


def test_failed_build_exits_3_with_the_log() -> None:
    result = codeexec("start", unique_name(), "-d", "codeexec-no-such-package-xyz")
    assert result.returncode == 3
    assert "error: building the session image failed" in result.stderr
    assert "codeexec-no-such-package-xyz" in result.stderr
    assert "Traceback" not in result.stderr
