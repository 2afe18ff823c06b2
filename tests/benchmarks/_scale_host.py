"""The host side of many sessions, read from /proc and cgroup v1 (Linux only).

dockerd, containerd, each docker-proxy and containerd-shim, this process: their
memory (RSS, and PSS, which splits shared pages between the processes sharing
them), threads and descriptors; and the containers' CPU while idle.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CPUACCT = Path("/sys/fs/cgroup/cpuacct/docker")


def procs(comm: str) -> list[int]:
    """Pids of the processes whose command name is ``comm``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == comm:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def _status(pid: int, key: str) -> int:
    """A number from /proc/<pid>/status (``VmRSS`` in KiB, ``Threads``), 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _fds(pid: int | str) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split between the processes sharing them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def host_snapshot() -> dict[str, Any]:
    """dockerd, containerd, every docker-proxy and shim, and this process, right now."""
    snap: dict[str, Any] = {}
    for comm in ("dockerd", "containerd"):
        pids = procs(comm)
        snap[comm] = {
            "rss_mib": sum(_status(p, "VmRSS") for p in pids) / 1024,
            "threads": sum(_status(p, "Threads") for p in pids),
            "fds": sum(_fds(p) for p in pids),
        }
    for comm in ("docker-proxy", "containerd-shim"):
        pids = procs(comm)
        snap[comm] = {"pids": pids, "cmdlines": {p: _cmdline(p) for p in pids}}
    snap["self"] = {
        "fds": _fds("self"),
        "threads": threading.active_count(),
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }
    every = [e for e in os.listdir("/proc") if e.isdigit()]
    snap["host_pids"] = len(every)
    snap["host_tasks"] = sum(_status(int(p), "Threads") for p in every)  # pid_max counts these
    return snap


def idle_cpu_percent(container_ids: Sequence[str], seconds: float = 3.0) -> float | None:
    """CPU the containers use while idle, in percent of one core (cgroup v1 cpuacct)."""

    def used() -> int:
        total = 0
        for cid in container_ids:
            try:
                total += int((CPUACCT / cid / "cpuacct.usage").read_text())
            except (OSError, ValueError):
                return -1
        return total

    first = used()
    time.sleep(seconds)
    second = used()
    if first < 0 or second < 0:
        return None
    return (second - first) / 1e9 / seconds * 100


def per_process(
    pids: Sequence[int], cmdlines: dict[int, str], marks: Sequence[str]
) -> dict[str, float]:
    """RSS and PSS of the processes whose command line names one of ``marks``."""
    ours = [p for p in pids if any(m in cmdlines.get(p, "") for m in marks)]
    rss = [_status(p, "VmRSS") / 1024 for p in ours]
    pss = [_pss_kib(p) / 1024 for p in ours]
    return {
        "count": len(ours),
        "rss_mib_total": sum(rss),
        "rss_mib_mean": statistics.mean(rss) if rss else 0.0,
        "pss_mib_total": sum(pss),
        "threads_total": sum(_status(p, "Threads") for p in ours),
    }


def fd_limit(pids: Sequence[int]) -> int | None:
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
                if line.startswith("Max open files"):
                    return int(line.split()[3])
        except (OSError, ValueError, IndexError):
            pass
    return None
