"""Helpers for the benchmarks: timing, percentiles, docker calls, cgroup reads.

Benchmarks may use subprocess (the library itself may not, outside docker.py).
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DOCKER = os.environ.get("CODEEXEC_DOCKER", "docker")
RUN_ID = secrets.token_hex(3)
PREFIX = f"bench-{RUN_ID}"  # every container this run makes carries it (or is pool-owned)
BENCH_LABEL = "codeexec.bench=1"
CGROUP = Path("/sys/fs/cgroup/memory/docker")


def docker(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None, check: bool = True
) -> str:
    proc = subprocess.run(
        [DOCKER, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def pct(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on the sorted samples."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], Any], n: int, warmup: int = 0) -> list[float]:
    """Wall-clock milliseconds of ``n`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50": pct(samples, 50),
        "p99": pct(samples, 99),
        "min": min(samples),
        "n": len(samples),
    }


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    try:
        dv = docker("version", "--format", "{{.Server.Version}}", timeout=10)
    except (RuntimeError, OSError, subprocess.SubprocessError):
        dv = "?"
    cgroup = "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "docker": dv,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cgroup": cgroup,
    }


def cgroup_memory(container_id: str) -> tuple[int, int] | None:
    """(usage, max_usage) bytes of a container's memory cgroup (v1), or None."""
    base = CGROUP / container_id
    try:
        usage = int((base / "memory.usage_in_bytes").read_text())
        peak = int((base / "memory.max_usage_in_bytes").read_text())
    except (OSError, ValueError):
        return None
    return usage, peak


def reset_cgroup_peak(container_id: str) -> None:
    """Start a container's peak (v1 ``max_usage_in_bytes``) again from its usage now:
    earlier steps (a 100 MiB upload to its tmpfs) must not count as a later one's."""
    try:
        (CGROUP / container_id / "memory.max_usage_in_bytes").write_text("0")
    except OSError:
        pass


def cgroup_stat(container_id: str) -> dict[str, int]:
    try:
        text = (CGROUP / container_id / "memory.stat").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


# -- the floor: a stdlib echo server in a container --------------------------------

ECHO_SERVER = r"""
import socket, struct
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(16)
def exact(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            h = exact(c, 4)
            c.sendall(h + exact(c, struct.unpack(">I", h)[0]))
    except (EOFError, OSError):
        pass
    c.close()
"""


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = sock.recv(n - len(buf))
        if not data:
            raise EOFError
        buf += data
    return bytes(buf)


def echo_round_trip(sock: socket.socket, frame: bytes) -> None:
    sock.sendall(frame)
    head = recv_exact(sock, 4)
    recv_exact(sock, struct.unpack(">I", head)[0])


def connect_echo(port: int, frame: bytes, deadline: float) -> socket.socket:
    """Connect and complete one echo: docker-proxy accepts before the server listens."""
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            echo_round_trip(sock, frame)
            return sock
        except (OSError, EOFError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def host_port(container: str, port: int) -> int:
    out = docker("port", container, f"{port}/tcp")
    return int(out.splitlines()[0].rsplit(":", 1)[1])


def cleanup(extra_ids: Sequence[str] = ()) -> int:
    """Remove every container of this run (name prefix or bench label)."""
    ids = set(extra_ids)
    for flt in (f"name={PREFIX}", f"label={BENCH_LABEL}"):
        out = docker("ps", "-aq", "--no-trunc", "--filter", flt, check=False)
        ids.update(out.split())
    if ids:
        docker("rm", "-f", *sorted(ids), check=False)
    return len(ids)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
