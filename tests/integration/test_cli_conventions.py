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
    started = codeexec("start", name)
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
