"""Frame codec: a 4-byte big-endian length, then that many bytes of UTF-8 JSON
holding one object.

Blocking helpers (`read_frame`, `write_frame`) serve the worker's control pipes;
`FrameDecoder` is the incremental decoder behind the supervisor's select loop.
"""

from __future__ import annotations

import json
import os
import struct

from .constants import DEFAULT_FRAME_LIMIT

HEADER = struct.Struct(">I")


class FrameError(Exception):
    """A frame that cannot be accepted; `code` is the protocol error code."""

    code = "bad_frame"


class FrameTooLarge(FrameError):
    """The length prefix exceeds the receiver's limit."""

    code = "too_large"


class BadFrame(FrameError):
    """The body is not UTF-8 JSON holding one object."""

    code = "bad_frame"


def frame_limit_from_env() -> int:
    try:
        value = int(os.environ.get("CODEEXEC_FRAME_LIMIT", ""))
    except ValueError:
        return DEFAULT_FRAME_LIMIT
    return value if value > 0 else DEFAULT_FRAME_LIMIT


def encode_body(obj: dict) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from user reprs) are not UTF-8: escape them instead.
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def encode(obj: dict) -> bytes:
    """Return the frame (length prefix + body) for one JSON object."""
    body = encode_body(obj)
    return HEADER.pack(len(body)) + body


def check_length(length: int, limit: int) -> None:
    if length > limit:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {limit} bytes")


def decode_body(body: bytes) -> dict:
    """Parse one frame body, raising BadFrame unless it is a UTF-8 JSON object."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadFrame(f"frame body is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadFrame(f"frame body is a JSON {type(obj).__name__}, not an object")
    return obj


class FrameDecoder:
    """Incremental decoder: feed() bytes as they arrive, then call next_frame()
    until it returns None. The length is checked as soon as the 4-byte prefix is
    in, so an oversized frame's body is never buffered."""

    def __init__(self, limit: int = DEFAULT_FRAME_LIMIT) -> None:
        self.limit = limit
        self._buf = bytearray()

    def feed(self, data: bytes | memoryview) -> None:
        self._buf += data

    def pending(self) -> int:
        """Bytes received that do not yet form a complete frame."""
        return len(self._buf)

    def next_frame(self) -> dict | None:
        if len(self._buf) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(self._buf)
        check_length(length, self.limit)
        end = HEADER.size + length
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[HEADER.size : end])
        del self._buf[:end]
        return decode_body(body)

    def frames(self) -> list:
        """All complete frames now buffered (raises FrameError on a bad one)."""
        out: list = []
        while True:
            frame = self.next_frame()
            if frame is None:
                return out
            out.append(frame)


def read_exact_fd(fd: int, n: int) -> bytes | None:
    """Read exactly n bytes from a blocking fd; None on EOF before the first byte."""
    chunks = []
    got = 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1024 * 1024))
        if not chunk:
            if got == 0:
                return None
            raise BadFrame(f"end of stream inside a frame ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame_fd(fd: int, limit: int = DEFAULT_FRAME_LIMIT) -> dict | None:
    """Read one frame from a blocking fd; None on a clean end of stream."""
    header = read_exact_fd(fd, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    check_length(length, limit)
    body = read_exact_fd(fd, length) if length else b""
    if body is None:
        raise BadFrame("end of stream inside a frame")
    return decode_body(body)


def write_all_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_frame_fd(fd: int, obj: dict) -> None:
    write_all_fd(fd, encode(obj))


def read_frame(stream, limit: int = DEFAULT_FRAME_LIMIT) -> dict | None:
    """Read one frame from a blocking binary file-like object or socket file."""

    def exact(n: int, at_start: bool) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = stream.read(n - len(data))
            if not chunk:
                if at_start and not data:
                    return None
                raise BadFrame("end of stream inside a frame")
            data += chunk
        return data

    header = exact(HEADER.size, True)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    check_length(length, limit)
    return decode_body(exact(length, False) or b"")


def write_frame(stream, obj: dict) -> None:
    stream.write(encode(obj))
    flush = getattr(stream, "flush", None)
    if flush is not None:
        flush()
