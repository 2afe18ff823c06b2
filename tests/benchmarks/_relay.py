"""The exec relay (the same frames over ``docker exec -i``) against TCP, side by side.

One session on this host's engine is reached both ways at once (``transport="tcp"``
and ``transport="exec"``), sampled in turn so that the ratio compares the same
moments of a noisy shared machine: the ``execute('pass')`` round trip and a stream
of N MB of stdout. When the namespaced second engine (scripts/second_engine.sh)
answers, a session there adds the relay to an engine whose ports this host cannot
reach: what a remote engine costs.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeexec import ContainerSession, StreamEvent
from codeexec.docker import Docker

from . import _util as u

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "second_engine.sh"
ENGINE2 = "unix:///run/codeexec-engine2/docker.sock"
STREAM = """\
import sys
_chunk = ("x" * 1023 + "\\n") * 1024
for _ in range({mb}):
    sys.stdout.write(_chunk)
del _chunk
"""
ROWS = (
    ("relay_rt_tcp_ms", "round trip: execute('pass'), TCP (local engine)"),
    ("relay_rt_exec_ms", "round trip: execute('pass'), exec relay (local engine)"),
    ("relay_rt_remote_ms", "round trip: execute('pass'), exec relay (namespaced engine)"),
)


def _stream(session: ContainerSession, mb: int) -> float:
    """MB/s of ``mb`` MB of stdout streamed from ``session``."""
    received = 0
    t0 = time.perf_counter()
    for event in session.execute_stream(STREAM.format(mb=mb), output_limit=(mb + 8) << 20):
        if isinstance(event, StreamEvent):
            received += len(event.text)
    elapsed = time.perf_counter() - t0
    assert received >= mb << 20, f"streamed {received} bytes, not {mb} MB"
    return received / 2**20 / elapsed


def _engine2() -> Docker | None:
    try:
        done = subprocess.run(["bash", str(SCRIPT), "status"], timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Docker(host=ENGINE2, name="e2") if done.returncode == 0 else None


def measure(session_name: str, n: int, mb: int, prefix: str, idle: float) -> dict[str, Any]:
    """Round trips (``n`` samples each, interleaved) and one ``mb`` MB stream each way."""
    tcp = ContainerSession.attach(session_name, transport="tcp")
    relay = ContainerSession.attach(session_name, transport="exec")
    assert relay.route == "exec" and tcp.route in ("bridge", "published")
    steps: dict[str, Callable[[], object]] = {
        "relay_rt_tcp_ms": lambda: tcp.execute("pass"),
        "relay_rt_exec_ms": lambda: relay.execute("pass"),
    }
    remote: ContainerSession | None = None
    engine2 = _engine2()
    if engine2 is not None:
        remote = ContainerSession.start(f"{prefix}-remote", docker=engine2, idle_timeout=idle)
        steps["relay_rt_remote_ms"] = lambda: remote.execute("pass")  # type: ignore[union-attr]
    samples: dict[str, list[float]] = {key: [] for key in steps}
    out: dict[str, Any] = {}
    try:
        for i in range(n + 20):
            for key, step in steps.items():
                taken = u.timed(step, 1)
                if i >= 20:  # the first 20 rounds warm up
                    samples[key] += taken
        out = {key: u.summary(values) for key, values in samples.items()}
        out["relay_stream_mb"] = mb
        out["relay_stream_tcp_mb_s"] = _stream(tcp, mb)
        out["relay_stream_exec_mb_s"] = _stream(relay, mb)
        if remote is not None:
            out["relay_stream_remote_mb_s"] = _stream(remote, mb)
    finally:
        tcp.close()
        relay.close()
        if remote is not None:
            remote.stop()
    return out


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    out = [
        (label, f"p50 {r[key]['p50']:.3f} ms   p99 {r[key]['p99']:.3f} ms   (n={r[key]['n']})")
        for key, label in ROWS
        if key in r
    ]
    mb = r.get("relay_stream_mb")
    for key, how in (
        ("relay_stream_tcp_mb_s", "TCP"),
        ("relay_stream_exec_mb_s", "exec relay"),
        ("relay_stream_remote_mb_s", "exec relay, namespaced engine"),
    ):
        if key in r:
            out.append((f"stream {mb} MB of stdout, {how}", f"{r[key]:.0f} MB/s"))
    return out


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """What the relay costs (info: no target, a remote engine has no TCP route)."""
    if "relay_rt_tcp_ms" not in r:
        return []
    ratio = r["relay_rt_exec_ms"]["p50"] / r["relay_rt_tcp_ms"]["p50"]
    speed = r["relay_stream_exec_mb_s"] / r["relay_stream_tcp_mb_s"]
    return [
        ("exec relay / TCP round trip (info)", f"{ratio:.2f}x", None),
        ("exec relay / TCP stream throughput (info)", f"{speed:.2f}x", None),
    ]
