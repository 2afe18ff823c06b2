"""runc beside gVisor (``runtime="runsc"``): session start and execute round trip.

For each runtime the engine has: ``ContainerSession.start`` on the cached image
(each session removed after), then ``execute('pass')`` round trips on one session,
the two runtimes' samples interleaved so both see the same moments of a noisy VM.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from codeexec import ContainerSession
from codeexec.docker import Docker

from . import _util as u

RUNTIMES = ("runc", "runsc")


def run(results: dict[str, Any], log: Callable[[str], None], *, n_fast: int, n_slow: int) -> None:
    have = [r for r in RUNTIMES if r == "runc" or r in Docker().runtimes()]
    sessions: dict[str, ContainerSession] = {}
    starts: dict[str, list[float]] = {r: [] for r in have}
    rtt: dict[str, list[float]] = {r: [] for r in have}
    try:
        log(f"runtimes: start and execute('pass') under {', '.join(have)}")
        for i in range(n_slow):
            for runtime in have:
                name = f"{u.PREFIX}-rt-{runtime}-{i}"
                t0 = time.perf_counter()
                s = ContainerSession.start(name, runtime=_opt(runtime), idle_timeout=900)
                starts[runtime].append((time.perf_counter() - t0) * 1000)
                s.stop()
        for runtime in have:
            sessions[runtime] = ContainerSession.start(
                f"{u.PREFIX}-rt-{runtime}", runtime=_opt(runtime), idle_timeout=900
            )
            for _ in range(20):
                sessions[runtime].execute("pass")
        for _ in range(n_fast):
            for runtime, session in sessions.items():
                rtt[runtime] += u.timed(lambda s=session: s.execute("pass"), 1)
    finally:
        for s in sessions.values():
            s.stop()
    results["runtimes"] = {
        r: {"start_ms": u.summary(starts[r]), "exec_ms": u.summary(rtt[r])} for r in have
    }


def _opt(runtime: str) -> str | None:
    return None if runtime == "runc" else runtime


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for runtime, m in (r.get("runtimes") or {}).items():
        s, e = m["start_ms"], m["exec_ms"]
        out.append((
            f"runtime {runtime}: start (cached image) / execute('pass')",
            f"start p50 {s['p50']:.0f} ms p99 {s['p99']:.0f} ms (n={s['n']})   "
            f"execute p50 {e['p50']:.3f} ms p99 {e['p99']:.3f} ms (n={e['n']})",
        ))  # fmt: skip
    return out
