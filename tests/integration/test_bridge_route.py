"""A session on this local engine is reached on its bridge address, not docker-proxy.

The bridge address is the container's own address on the engine's bridge network:
only this host (and containers on the same bridge, which could reach the executor
port before) can connect to it, and the protocol-2 handshake authenticates both ends
either way. A session without a network keeps the ``docker exec`` relay.
"""

from __future__ import annotations

import threading

import pytest

from codeexec import ContainerSession, _addrcache

pytestmark = pytest.mark.docker


def test_a_local_session_uses_its_bridge_address_for_everything(session_name: str) -> None:
    with ContainerSession.start(session_name) as s:
        ref = s._channel.ref
        assert ref.bridge is not None and ref.address is not None
        assert s.route == "bridge"
        client = s._channel.connected
        assert client is not None
        peer = client._transport._sock.getpeername()  # type: ignore[attr-defined]
        assert (peer[0], peer[1]) == ref.bridge
        assert s.execute("x = 41").status == "ok"
        timer = threading.Timer(0.5, s.interrupt)
        timer.start()
        r = s.execute("import time\nwhile True: time.sleep(0.01)", timeout=30)
        timer.join()
        assert r.status == "interrupted"
        assert s.execute("x + 1").value == "42"
        s.write_file("/tmp/b.txt", b"bridge")
        assert s.read_file("/tmp/b.txt") == b"bridge"
        s.reset()
        assert s.execute("'x' in dir()").value == "False"
        entry = _addrcache.recall(session_name)
        assert entry is not None and entry.route == "bridge" and entry.bridge == ref.bridge
        again = ContainerSession.attach(session_name)
        try:
            assert again.route == "bridge" and again.execute("1 + 1").value == "2"
        finally:
            again.close()


def test_a_session_without_network_keeps_the_relay(session_name: str) -> None:
    with ContainerSession.start(session_name, network="none") as s:
        assert s._channel.ref.bridge is None
        assert s.route == "exec"
        assert s.execute("1 + 1").value == "2"
