"""The installed `codeexec` executable's errors and conventions against the real engine (#15).

Only sessions named by this module are touched: other test runs share the engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RUN_ID

pytestmark = pytest.mark.docker

EXE = shutil.which("codeexec", path=str(Path(sys.executable).parent)) or "codeexec"


def codeexec(
    *args: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], input=input, capture_output=True, text=True, timeout=timeout,
        env={**os.environ},
    )  # fmt: skip


@pytest.fixture(scope="module")
def shared(docker_engine: None) -> Iterator[str]:
    name = f"m{RUN_ID}-conv"
    started = codeexec(
        "start", name, "-e", "GREETING=hello there", "-e", "EMPTY=", "--timeout", "3"
    )
    assert started.returncode == 0, started.stderr
    yield name
    codeexec("stop", name)


# -- errors that say what went wrong -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "reason", "hint"),
    [
        (["--runtime", "nosuch"], "Unknown runtime specified nosuch", "`docker info`"),
        (["--network", f"nosuch{RUN_ID}"], f"network nosuch{RUN_ID} not found", "--network"),
    ],
)
def test_docker_run_failure_shows_the_daemons_reason(
    session_name: str, args: list[str], reason: str, hint: str
) -> None:
    result = codeexec("start", session_name, *args)
    assert result.returncode == 3, result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert reason in error and hint in error, error
    assert "docker run --help" not in error


def test_messages_in_cli_words_and_json_errors(session_name: str) -> None:
    missing = codeexec("exec", "-s", session_name, "1")
    assert missing.returncode == 3 and f"`codeexec start {session_name}`" in missing.stderr
    assert "ContainerSession" not in missing.stderr
    as_json = codeexec("exec", "--json", "-s", session_name, "1")
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout)["error"]["type"] == "NoSuchSession"
    debug = codeexec("logs", session_name, "--debug")  # a global option after the command
    assert debug.returncode == 3 and "Traceback" in debug.stderr


# -- start's options, env= -----------------------------------------------------------------


def test_session_env_reaches_the_code_and_survives_reset(shared: str) -> None:
    code = "import os; E = os.environ; E.get('GREETING'), E.get('EMPTY'), 'CODEEXEC_ENV' in E"
    assert codeexec("exec", "-s", shared, code).stdout == "('hello there', '', False)\n"
    assert codeexec("reset", shared).returncode == 0
    assert codeexec("exec", "-s", shared, code).stdout == "('hello there', '', False)\n"
    once = codeexec("exec", "-s", shared, "-e", "GREETING=bye", "import os; os.environ['GREETING']")
    assert once.stdout == "'bye'\n"
    assert codeexec("exec", "-s", shared, code).stdout == "('hello there', '', False)\n"


def test_session_env_values_stay_out_of_labels_and_other_settings_are_refused(
    shared: str,
) -> None:
    listed = codeexec("ls", "--json")
    assert "hello there" not in listed.stdout and "GREETING" in listed.stdout  # names, a hash
    refused = codeexec("start", shared, "-e", "GREETING=zebra", "--timeout", "3")
    assert refused.returncode == 3 and "env 'EMPTY,GREETING:" in refused.stderr
    assert "zebra" not in refused.stderr and "hello" not in refused.stderr


def test_start_timeout_is_the_default_of_later_execs(shared: str) -> None:
    slow = codeexec("exec", "-s", shared, "import time; time.sleep(30)", timeout=60)
    assert slow.returncode == 124 and "timed out after 3 s" in slow.stderr
    assert codeexec("exec", "-s", shared, "--timeout", "30", "6 * 7").stdout == "42\n"


# -- exec, ls, logs, completion --------------------------------------------------------------


def test_exec_reads_piped_stdin(shared: str) -> None:
    piped = codeexec("exec", "-s", shared, input="v = 20\nprint(v + 1)\n")  # the fast path
    assert (piped.returncode, piped.stdout) == (0, "21\n")
    empty = codeexec("exec", "-s", shared, input="")
    assert empty.returncode == 2 and "no code to run: stdin was empty" in empty.stderr


def test_ls_quiet_and_format(shared: str) -> None:
    assert shared in codeexec("ls", "-q").stdout.splitlines()
    shown = codeexec("ls", "--format", "{name} {status} {network}").stdout.splitlines()
    assert f"{shared} running bridge" in shown


def test_logs_tail_0_is_none_and_follow_follows(shared: str) -> None:
    assert codeexec("logs", shared, "--tail", "1").stdout.strip()  # the executor said something
    assert codeexec("logs", shared, "--tail", "0").stdout == ""
    follower = subprocess.Popen(
        [EXE, "logs", "-f", "--tail", "1", shared], stdout=subprocess.PIPE, text=True
    )
    try:
        assert follower.stdout is not None and follower.stdout.readline().strip()
        assert follower.poll() is None  # still following
    finally:
        follower.terminate()
        follower.communicate(timeout=30)


def test_session_names_complete_in_bash(shared: str) -> None:
    env = {
        **os.environ, "_CODEEXEC_COMPLETE": "complete_bash",
        "COMP_WORDS": f"codeexec exec -s {shared[:-2]}", "COMP_CWORD": "3",
    }  # fmt: skip
    done = subprocess.run([EXE], env=env, capture_output=True, text=True, timeout=60)
    assert shared in done.stdout.split(), done.stderr
