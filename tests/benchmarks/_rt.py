"""The execute round trip through docker-proxy (the published port) and through the
container's bridge address, side by side.

Four rows, sampled in turn (one sample of each, then the next), so that every ratio
compares the same moments of a noisy shared machine: the raw TCP echo floor through
the published port and through the bridge address, and ``execute('pass')`` of one
session reached each way (``CODEEXEC_BRIDGE=0`` for the published port).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from codeexec import ContainerSession, _addrcache

from . import _util as u

TINY = json.dumps({"op": "exec", "id": "c1", "code": "pass", "timeout": None}).encode()
TINY_FRAME = struct.pack(">I", len(TINY)) + TINY
ROWS = (
    ("rt_floor_published_ms", "round trip: raw TCP echo, published port (docker-proxy)"),
    ("rt_floor_bridge_ms", "round trip: raw TCP echo, bridge address"),
    ("rt_exec_published_ms", "round trip: execute('pass'), published port"),
    ("rt_exec_bridge_ms", "round trip: execute('pass'), bridge address (the default)"),
)


def _echo(address: tuple[str, int]) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        try:
            sock = socket.create_connection(address, timeout=2)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            u.echo_round_trip(sock, TINY_FRAME)
            return sock
        except (OSError, EOFError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _attach(name: str, *, bridge: bool) -> ContainerSession:
    _addrcache.forget(name)  # a fresh lookup: the route is chosen again
    previous = os.environ.pop("CODEEXEC_BRIDGE", None)
    if not bridge:
        os.environ["CODEEXEC_BRIDGE"] = "0"
    try:
        session = ContainerSession.attach(name)  # connects now, and keeps the connection
    finally:
        os.environ.pop("CODEEXEC_BRIDGE", None)
        if previous is not None:
            os.environ["CODEEXEC_BRIDGE"] = previous
    want = "bridge" if bridge else "published"
    assert session.route == want, f"session reached by {session.route!r}, not {want!r}"
    return session


def measure(echo_container: str, session_name: str, n: int) -> dict[str, Any]:
    """The four rows, ``n`` samples each, interleaved."""
    ip = u.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                  echo_container).split()[0]  # fmt: skip
    # The echo server answers one connection at a time: a second one, on a port that
    # is not published, answers on the bridge address (in the same container).
    u.docker("exec", "-d", echo_container, "python3", "-c", u.ECHO_SERVER.replace("9000", "9001"))
    published = _echo(("127.0.0.1", u.host_port(echo_container, 9000)))
    bridged = _echo((ip, 9001))
    via_port = _attach(session_name, bridge=False)
    via_bridge = _attach(session_name, bridge=True)
    steps: dict[str, Callable[[], object]] = {
        "rt_floor_published_ms": lambda: u.echo_round_trip(published, TINY_FRAME),
        "rt_floor_bridge_ms": lambda: u.echo_round_trip(bridged, TINY_FRAME),
        "rt_exec_published_ms": lambda: via_port.execute("pass"),
        "rt_exec_bridge_ms": lambda: via_bridge.execute("pass"),
    }
    samples: dict[str, list[float]] = {key: [] for key in steps}
    try:
        for i in range(n + 20):
            for key, step in steps.items():
                taken = u.timed(step, 1)
                if i >= 20:  # the first 20 rounds warm up
                    samples[key] += taken
    finally:
        published.close()
        bridged.close()
        via_port.close()
        via_bridge.close()
    return {key: u.summary(values) for key, values in samples.items()}


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (label, f"p50 {r[key]['p50']:.3f} ms   p99 {r[key]['p99']:.3f} ms   (n={r[key]['n']})")
        for key, label in ROWS
        if key in r
    ]


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Each target with its ratio from this run: execute over the published-port floor."""
    if "rt_floor_published_ms" not in r:
        return []
    floor = r["rt_floor_published_ms"]["p50"]
    out: list[tuple[str, str, bool | None]] = []
    for key, label, most in (
        ("rt_exec_published_ms", "execute via published port / published-port floor <= 2", 2.0),
        ("rt_exec_bridge_ms", "execute via bridge / published-port floor <= 2", 2.0),
        ("rt_exec_bridge_ms", "stretch: execute via bridge / published-port floor <= 1.5", 1.5),
        ("rt_exec_bridge_ms", "stretch: execute via bridge <= published-port floor", 1.0),
        ("rt_floor_bridge_ms", "bridge floor / published-port floor (info)", float("inf")),
    ):
        ratio = r[key]["p50"] / floor
        out.append((label, f"{ratio:.2f}x", ratio <= most))
    return out
