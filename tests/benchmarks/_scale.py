"""Many idle sessions on one machine: start rate, execute across them, what it costs.

    .venv/bin/python -m tests.benchmarks.run --scale 100        # inside make bench
    .venv/bin/python -m tests.benchmarks._scale 100 --concurrency 8   # this step alone

Starts ``count`` sessions through the public API (``ContainerSession.start``) with
``concurrency`` threads, executes in each (every result checked), and measures:

- the start rate, and the start latency of the first and the last tenth (does the
  engine slow down as containers pile up?);
- execute p50/p99 round-robin across all sessions;
- memory: each container's cgroup v1 ``memory.usage_in_bytes`` / ``max_usage``, and
  the host processes every session adds: its ``docker-proxy`` (one per published
  port), its ``containerd-shim``, and the growth of ``dockerd`` and ``containerd``;
- the limits that could break first: host ports, file descriptors and threads of
  this process and of dockerd, pids, the address cache, ``docker ps`` and
  ``codeexec ls`` time.

Every container is named ``bench-<run id>-…`` and removed at the end, even on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("CODEEXEC_BASE_IMAGE", "codeexec-base:bookworm")

from codeexec import ContainerSession, maintenance  # noqa: E402
from codeexec.docker import Docker  # noqa: E402

from . import _util as u  # noqa: E402
from ._scale_host import (  # noqa: E402
    fd_limit,
    host_snapshot,
    idle_cpu_percent,
    per_process,
    procs,
)

IDLE = 900.0  # a crashed run's containers exit on their own
CONCURRENCY = 8  # docker run is serialised in dockerd: more threads only queue there
VENV_BIN = Path(sys.executable).parent
MiB = 2**20


# -- the measurement -----------------------------------------------------------------


def measure(
    count: int,
    *,
    prefix: str,
    concurrency: int = CONCURRENCY,
    rounds: int = 10,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start ``count`` sessions, execute in each, measure; remove them all (even on failure)."""
    docker = Docker()
    before = host_snapshot()
    sessions: dict[int, ContainerSession] = {}
    latencies: dict[int, float] = {}
    errors: dict[int, str] = {}
    lock = threading.Lock()
    t_start = time.perf_counter()

    def start(i: int) -> None:
        t0 = time.perf_counter()
        try:
            s = ContainerSession.start(f"{prefix}-s{i:03d}", idle_timeout=IDLE)
        except Exception as exc:  # noqa: BLE001 - a failed start is a finding, not an abort
            with lock:
                errors[i] = f"{type(exc).__name__}: {str(exc)[:300]}"
            return
        with lock:
            sessions[i] = s
            latencies[i] = (time.perf_counter() - t0) * 1000

    out: dict[str, Any] = {"sessions_asked": count, "concurrency": concurrency}
    try:
        log(f"scale: starting {count} sessions, {concurrency} at a time")
        with ThreadPoolExecutor(concurrency, "bench-start") as starters:
            list(starters.map(start, range(count)))
        start_s = time.perf_counter() - t_start
        ordered = [latencies[i] for i in sorted(latencies)]
        tenth = max(1, len(ordered) // 10)
        out.update(
            sessions=len(sessions),
            start_errors=[errors[i] for i in sorted(errors)][:5],
            start_failed=len(errors),
            start_all_s=start_s,
            start_rate_per_s=len(sessions) / start_s if start_s else 0.0,
            start_ms=u.summary(ordered) if ordered else None,
            start_first_tenth_ms=statistics.median(ordered[:tenth]) if ordered else None,
            start_last_tenth_ms=statistics.median(ordered[-tenth:]) if ordered else None,
        )
        live = [sessions[i] for i in sorted(sessions)]
        log(f"scale: {len(live)} started in {start_s:.1f} s; executing in each")
        out.update(_execute_all(live, rounds))
        # Idle, measured after the executes have settled (and the page cache with them).
        out["idle_cpu_percent"] = idle_cpu_percent([s.container_id for s in live])
        after = host_snapshot()
        out.update(_memory(docker, live, before, after))
        out.update(_limits(live, before, after))
        out.update(_listing(live, prefix))
    finally:
        t0 = time.perf_counter()
        for s in sessions.values():
            s.close()
        _remove(docker, prefix, {s.container_id: s.name for s in sessions.values()})
        out["remove_all_s"] = time.perf_counter() - t0
        log(f"scale: removed in {out['remove_all_s']:.1f} s")
    return out


def _execute_all(live: Sequence[ContainerSession], rounds: int) -> dict[str, Any]:
    wrong = []
    for k, s in enumerate(live):
        r = s.execute(f"x = {k}")
        if not r.ok:
            wrong.append(f"{s.name}: {r.status}")
    samples: list[float] = []
    for _ in range(rounds):
        for s in live:
            t0 = time.perf_counter()
            s.execute("x += 1000")
            samples.append((time.perf_counter() - t0) * 1000)
    for k, s in enumerate(live):  # each namespace kept its own x: nothing crossed over
        r = s.execute("x")
        if r.value != str(k + 1000 * rounds):
            wrong.append(f"{s.name}: x == {r.value!r}, expected {k + 1000 * rounds}")
    return {"exec_ms": u.summary(samples) if samples else None, "exec_wrong": wrong[:5]}


def _memory(
    docker: Docker, live: Sequence[ContainerSession], before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    mems = [m for m in (u.cgroup_memory(s.container_id) for s in live) if m]
    usage = [m[0] / MiB for m in mems]
    peaks = [m[1] / MiB for m in mems]
    stat = u.cgroup_stat(live[0].container_id) if live else {}
    ids = [s.container_id for s in live]
    # docker-proxy's command line names the container's address, not its id.
    ips = _addresses(docker, ids)
    proxy = per_process(
        after["docker-proxy"]["pids"], after["docker-proxy"]["cmdlines"],
        [f"-container-ip {ip} " for ip in ips],
    )  # fmt: skip
    shim = per_process(
        after["containerd-shim"]["pids"], after["containerd-shim"]["cmdlines"],
        [f"-id {cid}" for cid in ids],
    )  # fmt: skip
    # A shim serves one container here (runc v2, no grouping), so the count matches.
    grew = {
        comm: after[comm]["rss_mib"] - before[comm]["rss_mib"] for comm in ("dockerd", "containerd")
    }
    n = max(1, len(live))
    total = sum(usage) + proxy["pss_mib_total"] + shim["pss_mib_total"] + sum(grew.values())
    return {
        "idle_usage_mib_mean": statistics.mean(usage) if usage else None,
        "idle_usage_mib_max": max(usage) if usage else None,
        "idle_usage_mib_total": sum(usage),
        "idle_peak_mib_max": max(peaks) if peaks else None,
        "idle_rss_mib": stat.get("total_rss", 0) / MiB,
        "idle_cache_mib": stat.get("total_cache", 0) / MiB,
        "docker_proxy": proxy,
        "shim": shim,
        "dockerd_rss_mib": after["dockerd"]["rss_mib"],
        "dockerd_growth_mib": grew["dockerd"],
        "containerd_growth_mib": grew["containerd"],
        "host_mib_total": total,
        "host_mib_per_session": total / n,
    }


def _addresses(docker: Docker, ids: Sequence[str]) -> list[str]:
    if not ids:
        return []
    proc = docker._run(
        ["container", "inspect", "--format", "{{.NetworkSettings.IPAddress}}", *ids],
        check=False,
    )
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def _limits(
    live: Sequence[ContainerSession], before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    """What grows per session, against the limit it would hit."""
    lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    return {
        "self_fds": after["self"]["fds"],
        "self_fds_growth": after["self"]["fds"] - before["self"]["fds"],
        "self_fd_limit": after["self"]["fd_limit"],
        "self_threads": after["self"]["threads"],
        "dockerd_fds": after["dockerd"]["fds"],
        "dockerd_fds_growth": after["dockerd"]["fds"] - before["dockerd"]["fds"],
        "dockerd_threads": after["dockerd"]["threads"],
        "dockerd_threads_growth": after["dockerd"]["threads"] - before["dockerd"]["threads"],
        "dockerd_fd_limit": fd_limit(procs("dockerd")),
        "host_pids_growth": after["host_pids"] - before["host_pids"],
        "host_tasks_growth": after["host_tasks"] - before["host_tasks"],
        "pid_max": pid_max,
        "host_ports_range": hi - lo + 1,
        "docker_proxy_count": len(after["docker-proxy"]["pids"]),
    }


def _listing(live: Sequence[ContainerSession], prefix: str) -> dict[str, Any]:
    """``docker ps``, ``maintenance.list_idle`` and the ``codeexec ls`` process, timed."""
    names = {s.name for s in live}
    t0 = time.perf_counter()
    u.docker("ps", "-q", "--filter", "label=codeexec.managed=1")
    ps_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    listed = maintenance.list_idle()
    list_idle_ms = (time.perf_counter() - t0) * 1000
    ours = [x for x in listed if x.info.name in names]
    out: dict[str, Any] = {
        "docker_ps_ms": ps_ms,
        "list_idle_ms": list_idle_ms,
        "list_idle_found": len(ours),
        "list_idle_unanswered": sum(1 for x in ours if x.idle_seconds is None),
    }
    exe = VENV_BIN / "codeexec"
    if exe.exists():
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), "ls"], capture_output=True, text=True, timeout=300)
        out["cli_ls_ms"] = (time.perf_counter() - t0) * 1000
        out["cli_ls_found"] = sum(1 for n in names if n in proc.stdout)
    cache = _cache_entries(prefix)
    if cache is not None:
        out["addrcache_entries"] = cache
    return out


def _cache_entries(prefix: str) -> int | None:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    root = Path(base) / "codeexec" / "sessions"
    try:
        return sum(1 for p in root.glob(f"*/{prefix}-*.json"))
    except OSError:
        return None


def _remove(docker: Docker, prefix: str, live: dict[str, str]) -> None:
    """Every container of this run: the ones we know (their address-cache entries
    forgotten too, as ``stop`` does), and any other named with the prefix."""
    listed = u.docker("ps", "-aq", "--no-trunc", "--filter", f"name={prefix}-s", check=False)
    owned = {**{cid: "" for cid in listed.split()}, **live}
    every = sorted(owned)
    for k in range(0, len(every), 50):  # keeps each argv short
        maintenance.remove_containers({c: owned[c] for c in every[k : k + 50]}, docker=docker)


# -- report ---------------------------------------------------------------------------


def rows(sc: dict[str, Any]) -> list[tuple[str, str]]:
    """The table rows of one scale result."""
    n = sc.get("sessions", 0)
    out = [
        (
            f"scale: {n}/{sc['sessions_asked']} sessions started, {sc['concurrency']} at a time",
            f"{sc['start_all_s']:.1f} s = {sc['start_rate_per_s']:.1f}/s"
            + (f", {sc['start_failed']} failed" if sc.get("start_failed") else ""),
        )
    ]
    if sc.get("start_ms"):
        out.append(
            (
                "scale: one start (p50 / p99; first / last tenth)",
                f"p50 {sc['start_ms']['p50']:.0f} ms   p99 {sc['start_ms']['p99']:.0f} ms   "
                f"({sc['start_first_tenth_ms']:.0f} / {sc['start_last_tenth_ms']:.0f} ms)",
            )
        )
    if sc.get("exec_ms"):
        e = sc["exec_ms"]
        out.append(
            (
                f"scale: execute across {n} (round-robin)",
                f"p50 {e['p50']:.3f} ms   p99 {e['p99']:.3f} ms   (n={e['n']})",
            )
        )
    if sc.get("idle_usage_mib_mean") is not None:
        out.append(
            (
                "scale: idle container memory (cgroup usage)",
                f"mean {sc['idle_usage_mib_mean']:.1f} MiB, max {sc['idle_usage_mib_max']:.1f} "
                f"(rss {sc['idle_rss_mib']:.1f}, cache {sc['idle_cache_mib']:.1f}), "
                f"sum {sc['idle_usage_mib_total']:.0f} MiB",
            )
        )
        p, sh = sc["docker_proxy"], sc["shim"]
        out.append(
            (
                f"scale: docker-proxy ({p['count']}) / containerd-shim ({sh['count']})",
                f"RSS {p['rss_mib_total']:.0f} MiB ({p['rss_mib_mean']:.1f} each, PSS "
                f"{p['pss_mib_total']:.0f}), {p['threads_total']} threads / PSS "
                f"{sh['pss_mib_total']:.0f} MiB, {sh['threads_total']} threads",
            )
        )
        out.append(
            (
                "scale: dockerd / containerd RSS growth",
                f"+{sc['dockerd_growth_mib']:.0f} MiB (now {sc['dockerd_rss_mib']:.0f}) / "
                f"+{sc['containerd_growth_mib']:.0f} MiB",
            )
        )
        out.append(
            (
                "scale: host memory per session (all of the above)",
                f"{sc['host_mib_per_session']:.1f} MiB ({sc['host_mib_total']:.0f} MiB in all)",
            )
        )
    if "self_fds" in sc:
        out.append(
            (
                "scale: fds this process / dockerd (limit)",
                f"{sc['self_fds']} (+{sc['self_fds_growth']}, limit {sc['self_fd_limit']}) / "
                f"{sc['dockerd_fds']} (+{sc['dockerd_fds_growth']}, limit "
                f"{sc['dockerd_fd_limit']}); dockerd threads {sc['dockerd_threads']} "
                f"(+{sc['dockerd_threads_growth']}); host pids +{sc['host_pids_growth']}, "
                f"threads +{sc['host_tasks_growth']} (pid_max {sc['pid_max']})",
            )
        )
    if sc.get("idle_cpu_percent") is not None:
        out.append(("scale: CPU of all idle sessions", f"{sc['idle_cpu_percent']:.2f} % of a core"))
    if "list_idle_ms" in sc:
        ls = f", codeexec ls {sc['cli_ls_ms']:.0f} ms" if "cli_ls_ms" in sc else ""
        out.append(
            (
                "scale: docker ps / list_idle() / codeexec ls",
                f"{sc['docker_ps_ms']:.0f} ms / {sc['list_idle_ms']:.0f} ms "
                f"({sc['list_idle_unanswered']} unanswered){ls}",
            )
        )
    if "remove_all_s" in sc:
        out.append(("scale: remove them all", f"{sc['remove_all_s']:.1f} s"))
    return out


def targets(sc: dict[str, Any]) -> list[tuple[str, float | None, str, Callable[[float], bool]]]:
    """(label, value, format, met?) of each scale target."""
    n, asked = sc.get("sessions") or 0, sc.get("sessions_asked") or 0
    e = sc.get("exec_ms") or {}
    return [
        ("scale: every session started", float(n), f"{{:.0f}} of {asked}", lambda v: v == asked),
        ("scale: start rate >= 2 sessions/s", sc.get("start_rate_per_s"), "{:.1f}/s",
         lambda v: v >= 2),
        ("scale: execute p99 across the sessions <= 5 ms", e.get("p99"), "{:.2f} ms",
         lambda v: v <= 5),
        ("scale: host memory per idle session <= 40 MiB", sc.get("host_mib_per_session"),
         "{:.1f} MiB", lambda v: v <= 40),
        ("scale: list_idle() over every session <= 2 s", sc.get("list_idle_ms"), "{:.0f} ms",
         lambda v: v <= 2000),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="many idle sessions (tests/benchmarks/_scale.py)")
    parser.add_argument("count", type=int, nargs="?", default=100)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = measure(
        args.count,
        prefix=u.PREFIX,
        concurrency=args.concurrency,
        rounds=args.rounds,
        log=lambda m: print(f"  … {m}", file=sys.stderr, flush=True),
    )
    for label, value in rows(result):
        print(f"{label:<55}  {value}")
    for label, value, fmt, ok in targets(result):
        mark = "n/a " if value is None else ("met " if ok(value) else "MISS")
        print(f"  [{mark}] {label}: {'n/a' if value is None else fmt.format(value)}")
    if args.json:
        u.write_json(args.json, result)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
