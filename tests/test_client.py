"""ExecutorClient against a scripted fake executor, over TCP and over pipes.

Each test hands the harness a *script*: a function that plays the server's side of
one connection, frame by frame. The same scripts run over a socket on 127.0.0.1:0
and over a pair of ``os.pipe()``s, the way the exec relay carries them.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from codeexec import client as client_module, protocol
from codeexec.client import ExecutorClient
from codeexec.errors import (
    ConnectionLost,
    FileTransferError,
    HandshakeError,
    ProtocolError,
    SessionBusy,
)
from codeexec.models import Display, ExecResult, ResultLimits, StreamEvent

TOKEN = "test-token-0123456789"
HELLO = {"type": "hello", "protocol": 2, "python": "3.11.2", "executor": "2.0.0", "busy": False}


class Peer:
    """The server's end of one connection."""

    def __init__(self, read: Callable[[int], bytes], write: Callable[[bytes], Any]) -> None:
        self.read, self._write = read, write
        self.seen: list[protocol.Frame] = []

    def recv(self) -> protocol.Frame | None:
        frame = protocol.read_frame(self)
        if frame is not None:
            self.seen.append(frame)
        return frame

    def send(self, frame: protocol.Frame) -> None:
        self._write(protocol.encode(frame))

    def expect(self, op: str) -> protocol.Frame:
        frame = self.recv()
        assert frame is not None and frame["op"] == op, frame
        return frame

    def challenge(self, token: str = TOKEN) -> tuple[bytes, bytes]:
        """Answer the hello with a challenge proved with ``token``; return both nonces."""
        hello = self.expect("hello")
        assert set(hello) == {"op", "protocol", "nonce"} and hello["protocol"] == 2
        client_nonce, server_nonce = base64.b64decode(hello["nonce"]), os.urandom(32)
        proof = protocol.proof(token, "server", client_nonce, server_nonce)
        self.send({"type": "challenge", "protocol": 2, "nonce": protocol.b64(server_nonce),
                   "proof": protocol.b64(proof)})  # fmt: skip
        return client_nonce, server_nonce

    def handshake(self) -> None:
        client_nonce, server_nonce = self.challenge()
        expected = protocol.proof(TOKEN, "client", client_nonce, server_nonce)
        assert self.expect("auth") == {"op": "auth", "proof": protocol.b64(expected)}
        self.send(HELLO)

    def serve(self, **answers: Callable[[protocol.Frame], None]) -> None:
        """Answer requests until the client goes away; ``ping`` is always answered."""
        while (frame := self.recv()) is not None:
            if frame["op"] == "ping":
                self.send({"type": "pong", "busy": False})
            else:
                answers[frame["op"]](frame)

    def result(self, exec_id: str, status: str = "ok", **fields: Any) -> None:
        self.send({"type": "result", "id": exec_id, "status": status, "value": None,
                   "error": None, "duration_ms": 0.5, **fields})  # fmt: skip


Script = Callable[[Peer], None]


def idle(peer: Peer) -> None:
    peer.handshake()
    peer.serve()


class Harness:
    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.clients: list[ExecutorClient] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.closed_relays = 0

    def _run(self, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # re-raised in finish()
                self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def connect(self, script: Script, **kwargs: Any) -> ExecutorClient:
        if self.transport == "tcp":
            listener = socket.create_server(("127.0.0.1", 0))
            listener.settimeout(10)

            def tcp() -> None:
                with listener:
                    conn, _ = listener.accept()
                with conn:
                    conn.settimeout(10)
                    script(Peer(conn.recv, conn.sendall))

            self._run(tcp)
            port = listener.getsockname()[1]
            client = ExecutorClient.connect_tcp("127.0.0.1", port, TOKEN, **kwargs)
        else:
            client_r, server_w = os.pipe()
            server_r, client_w = os.pipe()

            def pipes() -> None:
                with open(server_r, "rb", buffering=0) as r, open(server_w, "wb", 0) as w:
                    script(Peer(r.read, w.write))

            self._run(pipes)
            reader, writer = open(client_r, "rb", buffering=0), open(client_w, "wb", 0)
            client = ExecutorClient.over_pipes(
                reader, writer, TOKEN, on_close=self._relay_closed, **kwargs
            )
        self.clients.append(client)
        return client

    def _relay_closed(self) -> None:
        self.closed_relays += 1

    def finish(self) -> None:
        for client in self.clients:
            client.close()
        for thread in self.threads:
            thread.join(10)
            assert not thread.is_alive(), "the fake server did not finish"
        if self.errors:
            raise self.errors[0]


@pytest.fixture(params=["tcp", "pipes"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    harness = Harness(request.param)
    yield harness
    harness.finish()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_hello_then_ping(harness: Harness) -> None:
    client = harness.connect(idle)
    assert client.hello == HELLO
    assert client.ping() == {"type": "pong", "busy": False}
    assert not client.closed
    client.close()
    client.close()
    assert client.closed
    if harness.transport == "pipes":
        assert harness.closed_relays == 1


def test_protocol_mismatch_is_a_handshake_error(harness: Harness) -> None:
    def refuse(peer: Peer) -> None:
        peer.expect("hello")
        peer.send({"type": "error", "code": "protocol_mismatch", "message": "speaks 3"})

    with pytest.raises(HandshakeError, match="another protocol version than this codeexec"):
        harness.connect(refuse)


def test_refused_proof_is_a_handshake_error(harness: Harness) -> None:
    def refuse(peer: Peer) -> None:
        peer.challenge()
        peer.expect("auth")
        peer.send({"type": "error", "code": "unauthorized", "message": "wrong proof"})

    with pytest.raises(HandshakeError, match="refused the host's proof"):
        harness.connect(refuse)


def test_accept_then_close_like_docker_proxy_is_connection_lost(harness: Harness) -> None:
    with pytest.raises(ConnectionLost, match="executor of the session"):
        harness.connect(lambda peer: None)


def test_no_hello_answer_in_time_is_connection_lost(harness: Harness) -> None:
    def silent(peer: Peer) -> None:
        peer.expect("hello")
        assert peer.recv() is None  # until the client gives up and closes

    timeout = {"connect_timeout" if harness.transport == "tcp" else "hello_timeout": 0.2}
    with pytest.raises(ConnectionLost, match="no hello answer arrived in time"):
        harness.connect(silent, **timeout)


def test_connection_refused_is_connection_lost() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionLost, match="cannot connect"):
        ExecutorClient.connect_tcp("127.0.0.1", port, TOKEN, session="demo")


def stream_script(peer: Peer) -> None:
    peer.handshake()

    def run(frame: protocol.Frame) -> None:
        exec_id = frame["id"]
        assert frame["code"] == "print('a')" and frame["timeout"] == 5
        peer.send({"type": "stream", "id": exec_id, "name": "stdout", "text": "a\n"})
        peer.send({"type": "ack", "op": "interrupt", "id": exec_id, "running": False})
        peer.send({"type": "stream", "id": "other", "name": "stdout", "text": "not mine"})
        peer.send({"type": "stream", "id": exec_id, "name": "stderr", "text": "warn\n"})
        peer.send({"type": "stream", "id": exec_id, "name": "stdout", "text": "b\n"})
        peer.result(exec_id, value="2")

    peer.serve(exec=run)


def test_execute_collects_stream_frames_in_order(harness: Harness) -> None:
    client = harness.connect(stream_script)
    seen: list[tuple[str, str]] = []
    result = client.execute("print('a')", timeout=5, on_output=lambda n, t: seen.append((n, t)))
    assert seen == [("stdout", "a\n"), ("stderr", "warn\n"), ("stdout", "b\n")]
    assert (result.status, result.ok, result.value) == ("ok", True, "2")
    assert (result.stdout, result.stderr) == ("a\nb\n", "warn\n")
    assert result.duration_ms == 0.5 and not result.truncated
    again = client.execute("print('a')", timeout=5)
    assert again.stdout == "a\nb\n"


def test_stream_yields_events_then_the_result(harness: Harness) -> None:
    client = harness.connect(stream_script)
    events = list(client.stream("print('a')", timeout=5))
    assert events[:3] == [
        StreamEvent("stdout", "a\n"), StreamEvent("stderr", "warn\n"), StreamEvent("stdout", "b\n")
    ]  # fmt: skip
    assert isinstance(events[3], ExecResult) and events[3].value == "2"
    assert events[3].stdout == "" and len(events) == 4
    assert client.ping()["type"] == "pong"


def test_error_result_carries_the_traceback(harness: Harness) -> None:
    def fail(peer: Peer) -> None:
        peer.handshake()
        error = {
            "ename": "ZeroDivisionError",
            "evalue": "division by zero",
            "traceback": ["Traceback (most recent call last):\n", "ZeroDivisionError\n"],
        }
        peer.serve(exec=lambda f: peer.result(f["id"], "error", error=error))  # fmt: skip

    result = harness.connect(fail).execute("1/0")
    assert result.status == "error" and result.error is not None
    assert result.error.ename == "ZeroDivisionError"
    assert result.error.format().startswith("Traceback")


def test_busy_error_is_session_busy_and_the_client_stays_usable(harness: Harness) -> None:
    def busy(peer: Peer) -> None:
        peer.handshake()
        peer.serve(exec=lambda f: peer.send({"type": "error", "id": f["id"], "code": "busy"}))

    client = harness.connect(busy, session="demo")
    with pytest.raises(SessionBusy, match="another execution is running in session 'demo'.*"
                       "interrupt\\(\\)"):  # fmt: skip
        client.execute("1")
    assert client.ping()["busy"] is False
    client.interrupt()  # nothing runs: no frame is sent
    assert client.ping()["type"] == "pong"


def test_display_frames_are_decoded(harness: Harness) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

    def plot(peer: Peer) -> None:
        peer.handshake()

        def run(frame: protocol.Frame) -> None:
            data = {"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}
            peer.send({"type": "display", "id": frame["id"], "data": data})
            peer.result(frame["id"])

        peer.serve(exec=run)

    seen: list[Display] = []
    result = harness.connect(plot).execute("plot()", on_display=seen.append)
    assert len(result.displays) == 1 and seen == list(result.displays)
    assert result.displays[0].data == {"image/png": png, "text/plain": "<Figure>"}


def test_put_and_get_file(harness: Harness) -> None:
    files: dict[str, bytes] = {}

    def storage(peer: Peer) -> None:
        peer.handshake()

        def put(frame: protocol.Frame) -> None:
            files[frame["path"]] = base64.b64decode(frame["data"])
            assert frame["mode"] == 0o600
            peer.send({"type": "ack", "op": "put_file", "id": frame["id"],
                       "size": len(files[frame["path"]])})  # fmt: skip

        def get(frame: protocol.Frame) -> None:
            data = files.get(frame["path"])
            if data is None:
                peer.send({"type": "error", "id": frame["id"], "code": "not_found",
                           "message": f"no such file: {frame['path']}"})  # fmt: skip
            elif len(data) > frame["max_bytes"]:
                peer.send({"type": "error", "id": frame["id"], "code": "too_large"})
            else:
                peer.send({"type": "file", "id": frame["id"], "path": frame["path"],
                           "data": base64.b64encode(data).decode(), "size": len(data)})  # fmt: skip

        peer.serve(put_file=put, get_file=get)

    client = harness.connect(storage)
    payload = bytes(range(256)) * 100
    assert client.put_file("data/x.bin", payload, mode=0o600) == len(payload)
    assert client.get_file("data/x.bin", max_bytes=1 << 20) == payload
    with pytest.raises(FileTransferError, match="no such file: missing.txt") as missing:
        client.get_file("missing.txt", max_bytes=10)
    assert missing.value.code == "not_found"
    with pytest.raises(FileTransferError) as large:
        client.get_file("data/x.bin", max_bytes=10)
    assert large.value.code == "too_large"
    assert not client.closed


def test_interrupt_from_another_thread(harness: Harness) -> None:
    started = threading.Event()

    def slow(peer: Peer) -> None:
        peer.handshake()

        def run(frame: protocol.Frame) -> None:
            peer.send({"type": "stream", "id": frame["id"], "name": "stdout", "text": "go\n"})
            started.set()
            assert peer.expect("interrupt") == {"op": "interrupt", "id": frame["id"]}
            peer.send({"type": "ack", "op": "interrupt", "id": frame["id"], "running": True})
            peer.result(frame["id"], "interrupted")

        peer.serve(exec=run)

    client = harness.connect(slow)

    def watch() -> None:
        started.wait(5)
        client.interrupt()

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = client.execute("while True: pass")
    watcher.join(5)
    assert result.status == "interrupted" and result.stdout == "go\n"
    assert client.ping()["type"] == "pong"  # the late ack was skipped


def test_closing_a_stream_early_interrupts_and_drains(harness: Harness) -> None:
    def endless(peer: Peer) -> None:
        peer.handshake()

        def run(frame: protocol.Frame) -> None:
            peer.send({"type": "stream", "id": frame["id"], "name": "stdout", "text": "1\n"})
            peer.expect("interrupt")
            peer.send({"type": "stream", "id": frame["id"], "name": "stdout", "text": "2\n"})
            peer.result(frame["id"], "interrupted")

        peer.serve(exec=run)

    client = harness.connect(endless)
    events = client.stream("loop()")
    assert next(events) == StreamEvent("stdout", "1\n")
    events.close()
    assert client.ping()["type"] == "pong"
    assert not client.closed


def test_output_kept_is_capped_by_output_limit(harness: Harness) -> None:
    def flood(peer: Peer) -> None:
        peer.handshake()

        def run(frame: protocol.Frame) -> None:
            for _ in range(4):
                peer.send({"type": "stream", "id": frame["id"], "name": "stdout",
                           "text": "x" * 5000})  # fmt: skip
            peer.result(frame["id"])

        peer.serve(exec=run)

    seen: list[str] = []
    result = harness.connect(flood).execute(
        "flood()", output_limit=10, on_output=lambda n, t: seen.append(t)
    )
    assert "".join(seen) == result.stdout  # the callback sees what is kept, no more
    assert result.truncated and "truncated by the client" in result.stdout
    assert result.stdout.split("\n")[0] == "x" * (10 + 4096)


# -- a hostile executor cannot grow the host past ResultLimits (docs/outputs.md) --------


def hostile(*frames: Callable[[str], protocol.Frame], **result: Any) -> Script:
    """An executor that answers every exec with ``frames`` (made from its id), then a result."""

    def script(peer: Peer) -> None:
        peer.handshake()

        def run(frame: protocol.Frame) -> None:
            for make in frames:
                peer.send(make(frame["id"]))
            peer.result(frame["id"], **result)

        peer.serve(exec=run)

    return script


def big_display(exec_id: str) -> protocol.Frame:
    png = base64.b64encode(b"\x89PNG" + bytes(2 * 2**20)).decode()  # 2 MiB, 2.7 MiB as sent
    return {"type": "display", "id": exec_id, "data": {"image/png": png, "text/plain": "<img>"}}


def test_client_keeps_displays_only_up_to_the_display_limit(harness: Harness) -> None:
    client = harness.connect(hostile(*[big_display] * 12))
    seen: list[Display] = []
    limits = ResultLimits(displays=6 * 2**20)
    result = client.execute("flood()", limits=limits, on_display=seen.append)
    assert result.truncated and seen == list(result.displays)
    assert [len(d.data.get("image/png", b"")) for d in result.displays] == [2 * 2**20 + 4] * 2 + [0]
    assert "over the limit of 6291456 bytes" in str(result.displays[-1].data["text/plain"])
    streamed = list(client.stream("flood()", limits=limits))  # the same cut, nothing kept
    assert [type(e).__name__ for e in streamed] == ["Display"] * 3 + ["ExecResult"]


def test_client_counts_each_display_so_a_flood_of_tiny_ones_is_capped(harness: Harness) -> None:
    def tiny(exec_id: str) -> protocol.Frame:
        return {"type": "display", "id": exec_id, "data": {"text/plain": ""}}

    client = harness.connect(hostile(*[tiny] * 300))
    result = client.execute("flood()", limits=ResultLimits(displays=100_000))
    assert result.truncated and len(result.displays) < 200


def test_client_cuts_a_huge_value(harness: Harness) -> None:
    client = harness.connect(hostile(value="v" * (3 * 2**20)))
    result = client.execute("x", limits=ResultLimits(value=1000))
    assert result.truncated and result.value is not None
    assert result.value.startswith("v" * 1000) and len(result.value) < 1000 + 4096 + 100
    assert "[codeexec: value truncated" in result.value


def test_client_cuts_a_huge_traceback_keeping_its_head_and_last_frames(harness: Harness) -> None:
    lines = ["Traceback (most recent call last):"]
    lines += [f'  File "<cell-1>", line {i}, in f{i}\n    ' + "s" * 1000 for i in range(5000)]
    lines += ["ValueError: " + "e" * 2**20]
    error = {"ename": "ValueError", "evalue": "e" * 2**20, "traceback": lines}
    client = harness.connect(hostile(status="error", error=error))
    result = client.execute("boom()", limits=ResultLimits(error=64 * 1024))
    assert result.truncated and result.error is not None
    kept = result.error.traceback
    assert len(result.error.format()) + len(result.error.evalue) < 64 * 1024 + 4096 + 2000
    assert kept[0] == "Traceback (most recent call last):"
    assert kept[-1].startswith("ValueError: eeee") and "[codeexec: line truncated" in kept[-1]
    assert "line 4999, in f4999" in kept[-2]  # the innermost frame survives
    assert any("traceback lines omitted" in line for line in kept)
    assert result.error.evalue.startswith("eeee") and "message truncated" in result.error.evalue


def test_client_survives_a_traceback_sent_as_one_string(harness: Harness) -> None:
    error = {"ename": "E" * 10_000, "evalue": "x", "traceback": "y" * 200_000}
    client = harness.connect(hostile(status="error", error=error))
    result = client.execute("boom()", limits=ResultLimits(error=10_000))
    assert result.error is not None and result.truncated
    assert len(result.error.traceback) == 1 and len(result.error.traceback[0]) < 16_000
    assert len(result.error.ename) < 400


def test_client_caps_a_flood_of_tiny_stream_frames(harness: Harness) -> None:
    def tiny(exec_id: str) -> protocol.Frame:
        return {"type": "stream", "id": exec_id, "name": "stdout", "text": "y"}

    client = harness.connect(hostile(*[tiny] * 6000))
    events = list(client.stream("flood()", output_limit=0))  # 4096: the executor's margin
    assert len(events) == 4096 + 1 and isinstance(events[-1], ExecResult)
    assert events[-1].truncated
    result = client.execute("flood()", output_limit=10)
    assert result.truncated and result.stdout.count("y") == 10 + 4096


def test_connection_dropped_mid_execution(harness: Harness) -> None:
    def crash(peer: Peer) -> None:
        peer.handshake()
        frame = peer.expect("exec")
        peer.send({"type": "stream", "id": frame["id"], "name": "stdout", "text": "bye"})

    client = harness.connect(crash, session="demo")
    with pytest.raises(ConnectionLost, match="executor of session 'demo' was lost"):
        client.execute("os._exit(0)")
    assert client.closed
    with pytest.raises(ConnectionLost):
        client.ping()


def test_no_result_by_the_deadline_is_connection_lost(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "INTERRUPT_GRACE", 0.0)
    monkeypatch.setattr(client_module, "RESULT_MARGIN", 0.1)

    def hang(peer: Peer) -> None:
        peer.handshake()
        peer.expect("exec")
        while peer.recv() is not None:  # the interrupt the client may send, then EOF
            pass

    client = harness.connect(hang)
    with pytest.raises(ConnectionLost, match="no result arrived in time"):
        client.execute("hang()", timeout=0.1)
    assert client.closed


def test_close_from_another_thread_ends_a_blocked_execute(harness: Harness) -> None:
    def hang(peer: Peer) -> None:
        peer.handshake()
        peer.expect("exec")
        while peer.recv() is not None:
            pass

    client = harness.connect(hang)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            client.execute("hang()")  # no timeout: waits until EOF
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: client._current_id is not None)
    client.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ConnectionLost)


def test_bad_frames_are_protocol_errors(harness: Harness) -> None:
    def garbage(peer: Peer) -> None:
        peer.handshake()
        peer.expect("ping")
        peer._write(b"\x00\x00\x00\x03abc")

    client = harness.connect(garbage)
    with pytest.raises(ProtocolError, match="not UTF-8 JSON"):
        client.ping()
    assert client.closed


def test_oversize_frame_is_refused_without_reading_it(harness: Harness) -> None:
    def big(peer: Peer) -> None:
        peer.handshake()
        peer.expect("ping")
        peer.send({"type": "pong", "pad": "x" * 1000})

    client = harness.connect(big)
    client.frame_limit = 100
    with pytest.raises(ProtocolError, match="above the limit"):
        client.ping()
    assert client.closed


def test_client_is_a_context_manager(harness: Harness) -> None:
    with harness.connect(idle) as client:
        assert "open" in repr(client)
    assert client.closed and "closed" in repr(client)
