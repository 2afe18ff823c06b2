"""Many sessions at once through the public API: every start, every result, every listing.

docs/performance.md (*100 sessions*) has the numbers at 100; this runs 30, started
concurrently, and checks what must hold at any count: each session executes in its
own namespace, ``codeexec ls`` lists them all within a bound, nothing is left behind.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from codeexec import ContainerSession, maintenance
from tests.conftest import unique_name

pytestmark = [pytest.mark.docker, pytest.mark.slow]

COUNT = 30
CONCURRENCY = 8
LS_BOUND_S = 30.0  # generous: ≈ 0.2–0.4 s here at 100 sessions, on a loaded 2-core machine


def test_thirty_sessions_started_at_once_each_execute_and_are_listed() -> None:
    names = [unique_name() for _ in range(COUNT)]
    sessions: list[ContainerSession] = []
    try:
        with ThreadPoolExecutor(CONCURRENCY) as starters:
            futures = [starters.submit(ContainerSession.start, n, idle_timeout=600) for n in names]
            failures = []
            for f in futures:
                try:
                    sessions.append(f.result())
                except Exception as exc:  # noqa: BLE001 - collect, then fail with all of them
                    failures.append(repr(exc))
        assert not failures, failures
        assert sorted(s.name for s in sessions) == sorted(names)
        assert len({s.container_id for s in sessions}) == COUNT

        for k, s in enumerate(sessions):
            assert s.execute(f"x = {k}").ok
        for s in sessions:
            assert s.execute("x += 1000").ok
        for k, s in enumerate(sessions):  # each namespace kept its own x
            assert s.execute("x").value == str(k + 1000)

        t0 = time.monotonic()
        listed = {x.info.name: x for x in maintenance.list_idle()}
        assert time.monotonic() - t0 < LS_BOUND_S
        for n in names:
            assert n in listed and listed[n].idle_seconds is not None, n

        exe = Path(sys.executable).with_name("codeexec")
        t0 = time.monotonic()
        proc = subprocess.run([str(exe), "ls"], capture_output=True, text=True, timeout=120)
        assert time.monotonic() - t0 < LS_BOUND_S
        assert proc.returncode == 0, proc.stderr
        missing = [n for n in names if n not in proc.stdout]
        assert not missing, missing
    finally:
        for s in sessions:
            s.close()
        maintenance.remove_containers({s.container_id: s.name for s in sessions})
    # Nothing of them is left (the conftest leak check also looks for the run's prefix).
    left = [n for n in names if n in {s.name for s in ContainerSession.list_sessions()}]
    assert not left, left
