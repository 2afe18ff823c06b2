"""Checkpoints, restore, fork and rollback_on_error (docs/snapshots.md, Tier 1).

A session holding 100 MB and then 1 GB of Python objects (1 KiB bytes objects in
a list) is checkpointed and restored; each is timed by the host (the library
call, a round trip) and by the executor (``duration_ms``, the work in the
container). Memory is the container's cgroup usage: right after the checkpoint
(pages shared, copy-on-write) and after the restored session has read every
object once (CPython's reference counts write to each object's page, so reading
unshares them: the worst case, a full second copy).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from codeexec import ContainerSession

from . import _util as u

MiB = 2**20
SIZES = (("100mb", 100), ("1gb", 1000))
TOUCH = "sum(len(b) for b in data)"


def _usage(session: ContainerSession) -> int | None:
    mem = u.cgroup_memory(session.container_id)
    return None if mem is None else mem[0]


def _delta(before: int | None, after: int | None) -> float | None:
    return None if before is None or after is None else (after - before) / MiB


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _one_size(session: ContainerSession, mb: int, rounds: int) -> dict[str, Any]:
    session.execute("data = None; import gc; gc.collect()")
    r = session.execute(f"data = [bytes(1024) for _ in range({mb * 1000})]; len(data)", timeout=600)
    assert r.ok, r
    out: dict[str, Any] = {}
    ck_ms, ck_in, rs_ms, rs_in, ck_mem, touch_mem = [], [], [], [], [], []
    for i in range(rounds):
        before = _usage(session)
        t0 = time.perf_counter()
        saved = session.checkpoint(f"b{i}")
        ck_ms.append((time.perf_counter() - t0) * 1000)
        ck_in.append(saved.duration_ms)
        after = _usage(session)
        d = _delta(before, after)
        if d is not None:
            ck_mem.append(d)
        session.execute("data.append(b'x')")
        t0 = time.perf_counter()
        restored = session.restore(saved)
        rs_ms.append((time.perf_counter() - t0) * 1000)
        rs_in.append(restored.duration_ms)
        if i == 0:
            base = _usage(session)
            session.execute(TOUCH, timeout=600)
            d = _delta(base, _usage(session))
            if d is not None:
                touch_mem.append(d)
        session.drop(saved)
    out["checkpoint_ms"] = _median(ck_ms)
    out["checkpoint_in_container_ms"] = _median(ck_in)
    out["restore_ms"] = _median(rs_ms)
    out["restore_in_container_ms"] = _median(rs_in)
    out["checkpoint_extra_mib"] = _median(ck_mem) if ck_mem else None
    out["after_reading_everything_extra_mib"] = touch_mem[0] if touch_mem else None
    return out


def _fork(session: ContainerSession, name: Callable[[str], str], rounds: int) -> dict[str, Any]:
    total, usable = [], []
    for i in range(rounds):
        t0 = time.perf_counter()
        forked = session.fork(name(f"fork{i}"))
        total.append((time.perf_counter() - t0) * 1000)
        assert forked.execute("len(data)").ok
        usable.append((time.perf_counter() - t0) * 1000)
        forked.stop()
    # The executor's own share: the fork op alone, on a bare connection.
    client = session._channel_client()
    inside = []
    for i in range(rounds):
        answer = client.fork(f"raw{i}")
        inside.append(float(answer.get("duration_ms") or 0))
        client.close_fork(f"raw{i}")
    return {
        "fork_ms": _median(total),
        "fork_usable_ms": _median(usable),
        "fork_in_container_ms": _median(inside),
    }


def _rollback(session: ContainerSession, n: int) -> dict[str, Any]:
    session.execute("x = 0")
    plain = u.timed(lambda: session.execute("x += 1"), n, warmup=10)
    rolled = u.timed(lambda: session.execute("x += 1", rollback_on_error=True), n, warmup=10)
    return {"exec_plain_ms": u.summary(plain), "exec_rollback_ms": u.summary(rolled)}


def run(name: Callable[[str], str], idle: float, quick: bool, log: Callable[[str], None]) -> dict:
    rounds = 3 if quick else 5
    n = 50 if quick else 200
    out: dict[str, Any] = {}
    with ContainerSession.start(name("ckpt"), idle_timeout=idle, memory="4g") as session:
        log("checkpoints: rollback_on_error on a small session")
        out["small"] = _rollback(session, n)
        for key, mb in SIZES[:1] if quick else SIZES:
            log(f"checkpoints: checkpoint and restore with {mb} MB of Python objects")
            out[key] = _one_size(session, mb, rounds)
            if key == "100mb":
                log("checkpoints: fork and rollback_on_error with 100 MB")
                out[key].update(_fork(session, name, rounds))
                out[key].update(_rollback(session, n // 2))
    return {"checkpoints": out}


def _fmt(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.1f} {unit}"


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    c = r.get("checkpoints") or {}
    out: list[tuple[str, str]] = []
    for key, label in (("100mb", "100 MB"), ("1gb", "1 GB")):
        s = c.get(key)
        if not s:
            continue
        out.append(
            (
                f"checkpoint, {label} of objects (host call / in container)",
                f"{s['checkpoint_ms']:.1f} ms / {s['checkpoint_in_container_ms']:.1f} ms, "
                f"memory +{_fmt(s['checkpoint_extra_mib'], 'MiB')}",
            )
        )
        out.append(
            (
                f"restore, {label} of objects (host call / in container)",
                f"{s['restore_ms']:.1f} ms / {s['restore_in_container_ms']:.1f} ms, after "
                f"reading every object +{_fmt(s['after_reading_everything_extra_mib'], 'MiB')}",
            )
        )
        if "fork_ms" in s:
            out.append(
                (
                    f"fork, {label} (fork() / + marker container / + first execute)",
                    f"{s['fork_in_container_ms']:.1f} ms / {s['fork_ms']:.0f} ms / "
                    f"{s['fork_usable_ms']:.0f} ms",
                )
            )
        if "exec_rollback_ms" in s:
            out.append(
                (
                    f"execute('x += 1'), {label}: plain / rollback_on_error",
                    f"p50 {s['exec_plain_ms']['p50']:.2f} ms / "
                    f"{s['exec_rollback_ms']['p50']:.2f} ms",
                )
            )
    small = c.get("small")
    if small:
        out.append(
            (
                "execute('x += 1'), small session: plain / rollback_on_error",
                f"p50 {small['exec_plain_ms']['p50']:.2f} ms / "
                f"{small['exec_rollback_ms']['p50']:.2f} ms",
            )
        )
    return out


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    s = (r.get("checkpoints") or {}).get("100mb")
    if not s:
        return []
    out: list[tuple[str, str, bool | None]] = []
    for label, value, most in (
        ("checkpoint at 100 MB <= 10 ms (in container)", s["checkpoint_in_container_ms"], 10),
        ("checkpoint at 100 MB <= 10 ms (host call)", s["checkpoint_ms"], 10),
        ("restore at 100 MB <= 20 ms (in container)", s["restore_in_container_ms"], 20),
        ("restore at 100 MB <= 20 ms (host call)", s["restore_ms"], 20),
        ("fork at 100 MB <= 100 ms (in container)", s.get("fork_in_container_ms"), 100),
        ("fork at 100 MB <= 100 ms (with its name, host call)", s.get("fork_ms"), 100),
    ):
        out.append(
            (
                label,
                "n/a" if value is None else f"{value:.1f} ms",
                None if value is None else value <= most,
            )
        )
    return out
