"""The pure frame codec, driven with in-memory streams."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import struct
import sys
from pathlib import Path

import pytest

from codeexec import protocol
from codeexec.errors import ConnectionLost, ProtocolError
from codeexec.models import Display, ExecResult, StreamEvent


class OneByteAtATime:
    """A stream whose every read returns a single byte, like a slow socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, n: int, /) -> bytes:
        return self._data.read(min(n, 1))


def test_encode_is_length_prefixed_compact_utf8_json() -> None:
    frame = protocol.encode({"op": "exec", "code": "print('é')", "n": [1, 2]})
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert frame[4:] == '{"op":"exec","code":"print(\'é\')","n":[1,2]}'.encode()


def test_round_trip_several_frames_then_clean_eof() -> None:
    messages = [protocol.hello(bytes(32)), {"type": "stream", "text": "ü\n" * 1000}, {}]
    stream = io.BytesIO(b"".join(protocol.encode(m) for m in messages))
    assert [protocol.read_frame(stream) for _ in messages] == messages
    assert protocol.read_frame(stream) is None


def test_split_reads_are_reassembled() -> None:
    message = {"type": "result", "id": "c1", "value": "'ünïcode'", "status": "ok"}
    stream = OneByteAtATime(protocol.encode(message) * 2)
    assert protocol.read_frame(stream) == message
    assert protocol.read_frame(stream) == message
    assert protocol.read_frame(stream) is None


def test_oversize_length_is_refused_before_reading_the_body() -> None:
    class HeaderOnly(io.BytesIO):
        def read(self, n: int | None = -1, /) -> bytes:
            assert n is not None and n <= 4, "the body of an oversize frame must not be read"
            return super().read(n)

    stream = HeaderOnly(struct.pack(">I", 2**32 - 1))
    with pytest.raises(ProtocolError, match="above the limit"):
        protocol.read_frame(stream)
    with pytest.raises(ProtocolError, match="above the limit of 10 bytes"):
        protocol.read_frame(io.BytesIO(protocol.encode({"a": "0123456789"})), limit=10)


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe{}", b'{"a": 1'])
def test_body_that_is_not_json_is_a_protocol_error(body: bytes) -> None:
    stream = io.BytesIO(struct.pack(">I", len(body)) + body)
    with pytest.raises(ProtocolError, match="not UTF-8 JSON"):
        protocol.read_frame(stream)


@pytest.mark.parametrize("value", [[1, 2], "text", 3, None])
def test_json_that_is_not_an_object_is_a_protocol_error(value: object) -> None:
    with pytest.raises(ProtocolError, match="not an object"):
        protocol.decode_body(json.dumps(value).encode())


@pytest.mark.parametrize("cut", [1, 3, 4, 10])
def test_eof_in_the_middle_of_a_frame_is_connection_lost(cut: int) -> None:
    data = protocol.encode({"type": "pong", "busy": False})
    with pytest.raises(ConnectionLost, match="middle of a frame"):
        protocol.read_frame(io.BytesIO(data[:cut]))


def test_clean_eof_before_a_frame_is_none() -> None:
    assert protocol.read_frame(io.BytesIO(b"")) is None


def test_encode_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(ProtocolError):
        protocol.encode({"x": object()})
    with pytest.raises(ProtocolError):
        protocol.encode({"x": float("nan")})


def test_message_builders_follow_the_spec() -> None:
    nonce = bytes(range(32))
    assert protocol.hello(nonce) == {
        "op": "hello", "protocol": 2, "nonce": base64.b64encode(nonce).decode(),
    }  # fmt: skip
    assert protocol.auth(b"\x01" * 32) == {"op": "auth", "proof": "AQEB" * 10 + "AQE="}
    assert protocol.exec_("c1", "1", None, None) == {
        "op": "exec", "id": "c1", "code": "1", "timeout": None,
    }  # fmt: skip
    assert protocol.exec_("c2", "1", 2.5, 100)["output_limit"] == 100
    assert protocol.interrupt("c1") == {"op": "interrupt", "id": "c1"}
    assert protocol.ping() == {"op": "ping"}
    assert protocol.reset() == {"op": "reset"}
    put = protocol.put_file("f1", "a/b.bin", b"\x00\xff", 0o600)
    assert put == {"op": "put_file", "id": "f1", "path": "a/b.bin", "data": "AP8=", "mode": 384}
    assert protocol.get_file("f2", "x", 10) == {
        "op": "get_file", "id": "f2", "path": "x", "max_bytes": 10,
    }  # fmt: skip


def test_parse_event_builds_models() -> None:
    stream = protocol.parse_event({"type": "stream", "id": "c1", "name": "stderr", "text": "x"})
    assert stream == StreamEvent(name="stderr", text="x")
    png = base64.b64encode(b"\x89PNG").decode()
    display = protocol.parse_event({"type": "display", "data": {"image/png": png}})
    assert isinstance(display, Display) and display.data["image/png"] == b"\x89PNG"
    result = protocol.parse_event(
        {"type": "result", "status": "error", "value": None, "duration_ms": 1.5,
         "error": {"ename": "ValueError", "evalue": "no", "traceback": ["T\n"]}}
    )  # fmt: skip
    assert isinstance(result, ExecResult) and result.error is not None
    assert (result.status, result.error.ename, result.duration_ms) == ("error", "ValueError", 1.5)
    assert protocol.parse_event({"type": "ack", "op": "interrupt"}) is None


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "stream", "name": "stdin", "text": "x"},
        {"type": "stream", "name": "stdout"},
        {"type": "result", "status": "weird"},
        {"type": "display", "data": {"image/png": "not base64!"}},
        {"type": "display", "data": ["x"]},
    ],
)
def test_parse_event_refuses_malformed_frames(frame: protocol.Frame) -> None:
    with pytest.raises(ProtocolError, match="malformed"):
        protocol.parse_event(frame)


# -- the handshake's proofs -------------------------------------------------------------

CLIENT_NONCE, SERVER_NONCE = b"c" * 32, b"s" * 32


def test_proofs_are_hmac_sha256_of_a_side_label_and_both_nonces() -> None:
    """Known answers computed from the spec (docs/protocol.md), not from the code."""
    for side in ("server", "client"):
        label = f"codeexec-v2 {side} proof".encode() + b"\0"
        expected = hmac.new(b"tok", label + CLIENT_NONCE + SERVER_NONCE, hashlib.sha256)
        assert protocol.proof("tok", side, CLIENT_NONCE, SERVER_NONCE) == expected.digest()
    server = protocol.proof("tok", "server", CLIENT_NONCE, SERVER_NONCE)
    assert server != protocol.proof("tok", "client", CLIENT_NONCE, SERVER_NONCE)
    assert server != protocol.proof("tok", "server", SERVER_NONCE, CLIENT_NONCE)


def test_host_and_executor_compute_the_same_proofs() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "executor_image"))
    from codeexec_executor import handshake

    nonces = CLIENT_NONCE + SERVER_NONCE
    assert handshake.PROTOCOL == protocol.PROTOCOL_VERSION
    for side, label in (("server", handshake.SERVER_LABEL), ("client", handshake.CLIENT_LABEL)):
        host = protocol.proof("tok", side, CLIENT_NONCE, SERVER_NONCE)  # type: ignore[arg-type]
        assert handshake.proof(b"tok", label, nonces) == host
        assert handshake.proof_ok(b"tok", label, nonces, protocol.b64(host))
        assert not handshake.proof_ok(b"other", label, nonces, protocol.b64(host))


def _challenge(token: str = "tok", **fields: object) -> protocol.Frame:
    proof = protocol.proof(token, "server", CLIENT_NONCE, SERVER_NONCE)
    frame = {"type": "challenge", "protocol": 2, "nonce": protocol.b64(SERVER_NONCE),
             "proof": protocol.b64(proof)}  # fmt: skip
    return {**frame, **fields}


def test_challenge_nonce_only_for_a_proof_made_with_the_token() -> None:
    assert protocol.challenge_nonce(_challenge(), "tok", CLIENT_NONCE) == SERVER_NONCE
    assert protocol.challenge_nonce(_challenge("other"), "tok", CLIENT_NONCE) is None
    assert protocol.challenge_nonce(_challenge(), "tok", b"x" * 32) is None  # a replay
    client_proof = protocol.proof("tok", "client", CLIENT_NONCE, SERVER_NONCE)
    reflected = _challenge(proof=protocol.b64(client_proof))
    assert protocol.challenge_nonce(reflected, "tok", CLIENT_NONCE) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "hello"},
        {"protocol": 1},
        {"nonce": None},
        {"nonce": protocol.b64(b"short")},
        {"proof": "not base64!"},
        {"proof": 12},
        {"proof": protocol.b64(bytes(32))},
    ],
)
def test_challenge_nonce_refuses_anything_else(fields: dict[str, object]) -> None:
    assert protocol.challenge_nonce(_challenge(**fields), "tok", CLIENT_NONCE) is None


def test_unb64_is_strict() -> None:
    assert protocol.unb64(protocol.b64(b"ab"), 2) == b"ab"
    for value in (None, 3, "YWI", "YW I=", "YWJj", "Y" * 1000):
        assert protocol.unb64(value, 2) is None
