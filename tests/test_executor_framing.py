"""Unit tests for the executor's stdlib frame codec (no processes, no sockets)."""

from __future__ import annotations

import io
import json
import os
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "executor_image"))

from codeexec_executor import framing  # noqa: E402


def _raw(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_encode_is_length_prefixed_utf8_json():
    frame = framing.encode({"text": "é"})
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert json.loads(frame[4:].decode("utf-8")) == {"text": "é"}


def test_encode_escapes_lone_surrogates():
    frame = framing.encode({"text": "\udc80"})
    assert framing.decode_body(frame[4:]) == {"text": "\udc80"}


def test_decoder_reassembles_frames_split_at_every_byte():
    data = framing.encode({"a": 1}) + framing.encode({"b": "two"}) + framing.encode({})
    decoder = framing.FrameDecoder()
    frames = []
    for i in range(len(data)):
        decoder.feed(data[i : i + 1])
        frames += decoder.frames()
    assert frames == [{"a": 1}, {"b": "two"}, {}]
    assert decoder.pending() == 0


def test_decoder_returns_several_frames_from_one_chunk():
    decoder = framing.FrameDecoder()
    decoder.feed(framing.encode({"n": 1}) + framing.encode({"n": 2}) + b"\x00\x00")
    assert decoder.frames() == [{"n": 1}, {"n": 2}]
    assert decoder.pending() == 2


def test_decoder_rejects_an_oversized_length_before_the_body():
    decoder = framing.FrameDecoder(limit=100)
    decoder.feed(struct.pack(">I", 101))
    with pytest.raises(framing.FrameTooLarge) as info:
        decoder.next_frame()
    assert info.value.code == "too_large"


def test_decoder_accepts_a_frame_at_the_limit():
    body = json.dumps({"x": "y" * 80}).encode()
    decoder = framing.FrameDecoder(limit=len(body))
    decoder.feed(_raw(body))
    assert decoder.next_frame() == {"x": "y" * 80}


def test_four_gib_length_is_too_large_by_default():
    decoder = framing.FrameDecoder()
    decoder.feed(b"\xff\xff\xff\xff")
    with pytest.raises(framing.FrameTooLarge):
        decoder.next_frame()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"42",
        b"null",
        b"\xff\xfe{}",
        b"",
        b'{"a": 1',
        '{"a": 1}'.encode("utf-16"),
    ],
)
def test_bad_bodies_are_bad_frames(body):
    decoder = framing.FrameDecoder()
    decoder.feed(_raw(body))
    with pytest.raises(framing.BadFrame) as info:
        decoder.next_frame()
    assert info.value.code == "bad_frame"


def test_read_frame_from_a_stream():
    stream = io.BytesIO(framing.encode({"op": "ping"}) + framing.encode({"op": "x"}))
    assert framing.read_frame(stream) == {"op": "ping"}
    assert framing.read_frame(stream) == {"op": "x"}
    assert framing.read_frame(stream) is None


def test_read_frame_truncated_stream_is_bad():
    with pytest.raises(framing.BadFrame):
        framing.read_frame(io.BytesIO(framing.encode({"op": "ping"})[:-1]))


def test_read_frame_checks_the_limit():
    with pytest.raises(framing.FrameTooLarge):
        framing.read_frame(io.BytesIO(struct.pack(">I", 11) + b"x" * 11), limit=10)


def test_write_frame_round_trip():
    stream = io.BytesIO()
    framing.write_frame(stream, {"k": ["v", 1, None]})
    stream.seek(0)
    assert framing.read_frame(stream) == {"k": ["v", 1, None]}


def test_fd_helpers_over_a_pipe():
    r, w = os.pipe()
    try:
        framing.write_frame_fd(w, {"op": "exec", "code": "é" * 10})
        os.close(w)
        w = -1
        assert framing.read_frame_fd(r) == {"op": "exec", "code": "é" * 10}
        assert framing.read_frame_fd(r) is None
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_frame_limit_from_env(monkeypatch):
    monkeypatch.setenv("CODEEXEC_FRAME_LIMIT", "1234")
    assert framing.frame_limit_from_env() == 1234
    monkeypatch.setenv("CODEEXEC_FRAME_LIMIT", "junk")
    assert framing.frame_limit_from_env() == framing.DEFAULT_FRAME_LIMIT
