"""The host sends nothing but a nonce to a peer until it proved it knows the token.

Every way the host reaches an executor (``connect_tcp``, the relay's pipes, a
``Channel`` reconnecting or probing, ``attach`` through the address cache) is
driven against impostors; the real executor, behind a recording proxy, shows that
the token itself never crosses the wire. No docker: ``tests/fake_docker.py`` stands
in where the session layer asks the engine. The same attack against the real
engine is in ``tests/integration/test_trust_channel.py``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from codeexec import ContainerSession, _addrcache, protocol
from codeexec._channel import Channel
from codeexec.client import ExecutorClient
from codeexec.docker import Docker, parse_ref
from codeexec.errors import HandshakeError, NoSuchSession
from tests.impostor import V1_HELLO, Impostor, split_frames
from tests.test_client import TOKEN, Harness, Peer
from tests.test_executor_contract import Executor

FAKE = str(Path(__file__).with_name("fake_docker.py"))
NOT_THE_EXECUTOR = "is not the executor of"


def _challenge(proof: bytes, nonce: bytes | None = None) -> protocol.Frame:
    nonce = os.urandom(32) if nonce is None else nonce
    return {"type": "challenge", "protocol": 2, "nonce": protocol.b64(nonce),
            "proof": protocol.b64(proof)}  # fmt: skip


def _replayed(client_nonce: bytes) -> protocol.Frame:
    """A genuine challenge, recorded from the real executor for another client's nonce."""
    server_nonce = os.urandom(32)
    proof = protocol.proof(TOKEN, "server", os.urandom(32), server_nonce)
    return _challenge(proof, server_nonce)


def _other_token(client_nonce: bytes) -> protocol.Frame:
    """What another session's executor (another token) answers."""
    server_nonce = os.urandom(32)
    proof = protocol.proof("another-token-0123456789", "server", client_nonce, server_nonce)
    return _challenge(proof, server_nonce)


def _reflected(client_nonce: bytes) -> protocol.Frame:
    """The client's own kind of proof (unknowable anyway) offered as the server's."""
    server_nonce = os.urandom(32)
    return _challenge(protocol.proof(TOKEN, "client", client_nonce, server_nonce), server_nonce)


@pytest.fixture(params=["tcp", "pipes"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    harness = Harness(request.param)
    yield harness
    harness.finish()


ANSWERS: dict[str, Callable[[bytes], protocol.Frame]] = {
    "v1-hello": lambda nonce: V1_HELLO,
    "v2-hello-without-challenge": lambda nonce: {**V1_HELLO, "protocol": 2},
    "v1-refusal": lambda nonce: {"type": "error", "code": "unauthorized", "message": "no"},
    "random-proof": lambda nonce: _challenge(os.urandom(32)),
    "replayed-challenge": _replayed,
    "another-token": _other_token,
    "reflected-proof": _reflected,
    "garbage-proof": lambda nonce: {**_challenge(b""), "proof": "\x1b]0;owned\x07"},
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
def test_an_impostor_is_refused_having_been_sent_only_a_nonce(
    harness: Harness, answer: Callable[[bytes], protocol.Frame]
) -> None:
    seen: list[protocol.Frame] = []

    def impostor(peer: Peer) -> None:
        hello = peer.expect("hello")
        peer.send(answer(base64.b64decode(hello["nonce"])))
        assert peer.recv() is None  # the client hung up: no auth, no exec
        seen.extend(peer.seen)

    with pytest.raises(HandshakeError, match=NOT_THE_EXECUTOR) as refused:
        harness.connect(impostor)
    assert "\x1b" not in str(refused.value)
    harness.finish()
    (hello,) = seen
    assert set(hello) == {"op", "protocol", "nonce"} and TOKEN not in json.dumps(hello)


# -- the real executor, through a proxy that records both directions -----------------


class RecordingProxy:
    """Forwards connections on 127.0.0.1 to ``port``, keeping every byte both ways."""

    def __init__(self, port: int) -> None:
        self.upstream = bytearray()  # what the client wrote
        self.downstream = bytearray()  # what the executor wrote
        self._target = port
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        server = socket.create_connection(("127.0.0.1", self._target))
        self._sockets = [client, server]
        for src, dst, log in ((client, server, self.upstream), (server, client, self.downstream)):
            thread = threading.Thread(target=self._pipe, args=(src, dst, log), daemon=True)
            thread.start()
            self._threads.append(thread)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, log: bytearray) -> None:
        try:
            while data := src.recv(65536):
                log += data
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:  # the other side reset: the test looks at what got through
            pass

    def close(self) -> None:
        self._listener.close()
        for thread in self._threads:
            thread.join(10)
        for sock in self._sockets:
            sock.close()


@pytest.fixture(scope="module")
def executors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Executor, Executor]]:
    """The session's executor, and another one (another token) on another port."""
    ours = Executor(tmp_path_factory.mktemp("ours"))
    other = Executor(tmp_path_factory.mktemp("other"))
    yield ours, other
    ours.stop()
    other.stop()


def test_the_token_never_crosses_the_wire(executors: tuple[Executor, Executor]) -> None:
    ours, _ = executors
    proxy = RecordingProxy(ours.port)
    with ExecutorClient.connect_tcp("127.0.0.1", proxy.port, ours.token) as client:
        assert client.execute("secret_code = 6 * 7\nsecret_code").value == "42"
        assert client.put_file("f.txt", b"file content") == 12
        assert client.get_file("f.txt", 100) == b"file content"
    proxy.close()
    ops = [f.get("op") for f in split_frames(bytes(proxy.upstream))]
    assert ops == ["hello", "auth", "exec", "put_file", "get_file"]
    token = ours.token.encode()
    for wire in (bytes(proxy.upstream), bytes(proxy.downstream)):
        assert token not in wire and base64.b64encode(token) not in wire


def test_an_executor_with_another_token_is_refused_before_any_exec(
    executors: tuple[Executor, Executor],
) -> None:
    ours, other = executors
    proxy = RecordingProxy(other.port)
    with pytest.raises(HandshakeError, match=f"127.0.0.1:{proxy.port} {NOT_THE_EXECUTOR}"):
        ExecutorClient.connect_tcp("127.0.0.1", proxy.port, ours.token, session="demo")
    proxy.close()
    (hello,) = split_frames(bytes(proxy.upstream))
    assert set(hello) == {"op", "protocol", "nonce"}
    assert ours.token.encode() not in proxy.upstream


# -- the session layer's ways in: probe, reconnect, the address cache ----------------


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Docker:
    """An engine on which the session's container is gone."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CODEEXEC_SESSION_CACHE", raising=False)
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "container")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", "Error: No such container: gone\n")
    for var in ("FAKE_DOCKER_LOG", "FAKE_DOCKER_STDOUT_PS", "FAKE_DOCKER_STDOUT_CONTAINER"):
        monkeypatch.delenv(var, raising=False)
    return Docker(FAKE)


@pytest.fixture
def impostor() -> Iterator[Impostor]:
    with Impostor() as fake:
        yield fake


def _container(port: int) -> dict[str, Any]:
    """What ``docker inspect`` said about the session while it ran."""
    return {
        "Id": "c0ffee" * 10 + "0000",
        "Name": "/codeexec-demo",
        "Config": {"Env": [f"CODEEXEC_TOKEN={TOKEN}"], "Labels": {"codeexec.session": "demo"}},
        "NetworkSettings": {
            "Ports": {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        },
        "State": {"Running": True},
    }


def _only_a_hello(impostor: Impostor) -> None:
    assert [[f["op"] for f in conn] for conn in impostor.frames()] == [["hello"]]
    assert TOKEN.encode() not in impostor.received


def test_probe_refuses_an_impostor(fake_docker: Docker, impostor: Impostor) -> None:
    channel = Channel(name="demo", ref=parse_ref(_container(impostor.port)), docker=fake_docker,
                      transport="tcp")  # fmt: skip
    with pytest.raises(HandshakeError, match=NOT_THE_EXECUTOR):
        channel.probe()
    _only_a_hello(impostor)


def test_reconnect_to_an_impostor_says_the_session_is_gone(
    fake_docker: Docker, impostor: Impostor
) -> None:
    channel = Channel(name="demo", ref=parse_ref(_container(impostor.port)), docker=fake_docker,
                      transport="tcp")  # fmt: skip
    with pytest.raises(NoSuchSession, match="is gone.*did not prove it is the session's executor"):
        channel.client()
    _only_a_hello(impostor)


def test_attach_through_the_address_cache_refuses_an_impostor(
    fake_docker: Docker, impostor: Impostor
) -> None:
    # An entry as a connection over the published port leaves it (the route it used).
    _addrcache.remember("demo", replace(parse_ref(_container(impostor.port)), route="published"))
    with pytest.raises(NoSuchSession, match="no running session named 'demo'") as gone:
        ContainerSession.attach("demo", docker=fake_docker)
    assert "a program that is not its executor now answers on its last known address" in str(
        gone.value
    )
    assert _addrcache.recall("demo") is None  # the stale entry is dropped
    _only_a_hello(impostor)
