"""A session on this local engine is reached on its bridge address, not docker-proxy.

The bridge address is the container's own address on the engine's bridge network:
only this host (and containers on the same bridge, which could reach the executor
port before) can connect to it, and the protocol-2 handshake authenticates both ends
either way. A session without a network keeps the ``docker exec`` relay.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import threading

import pytest

from codeexec import ContainerSession, NoSuchSession, _addrcache
from codeexec.docker import Docker

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


def test_a_relay_the_caller_chose_is_not_remembered_as_the_route(session_name: str) -> None:
    """An attach with transport="exec" uses the relay, but the next attach that lets
    codeexec choose (codeexec exec, codeexec ls) still goes to the bridge address: one
    docker exec per CLI call would cost it ~80 ms."""
    with ContainerSession.start(session_name) as s:
        assert s.route == "bridge"
        relayed = ContainerSession.attach(session_name, transport="exec")
        try:
            assert relayed.route == "exec" and relayed.execute("1 + 1").value == "2"
        finally:
            relayed.close()
        entry = _addrcache.recall(session_name)
        assert entry is not None and entry.route != "exec", entry
        again = ContainerSession.attach(session_name)
        try:
            assert again.route == "bridge" and again.execute("2 + 2").value == "4"
        finally:
            again.close()
        entry = _addrcache.recall(session_name)
        assert entry is not None and entry.route == "bridge", entry


def test_a_session_without_network_keeps_the_relay(session_name: str) -> None:
    with ContainerSession.start(session_name, network="none") as s:
        assert s._channel.ref.bridge is None
        assert s.route == "exec"
        assert s.execute("1 + 1").value == "2"


def test_a_dead_sessions_bridge_address_cannot_be_bound_from_this_host(session_name: str) -> None:
    # The published port's impostor (test_trust_channel) binds 127.0.0.1:<port> once
    # docker-proxy lets go; the bridge address is not the host's to bind, so a local
    # program cannot stand in for a dead session there. Attaching finds it gone.
    session = ContainerSession.start(session_name)
    bridge = session._channel.ref.bridge
    assert bridge is not None and session.route == "bridge"
    subprocess.run([Docker().binary, "rm", "-f", session.container_id],
                   capture_output=True, timeout=60)  # fmt: skip
    with socket.socket() as sock, pytest.raises(OSError) as caught:
        sock.bind(bridge)
    assert caught.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(NoSuchSession):
        ContainerSession.attach(session_name)
    session.close()
