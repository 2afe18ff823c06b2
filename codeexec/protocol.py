"""The wire codec shared by the host and the executor (see ``docs/protocol.md``).

Every message is one frame: a 4-byte unsigned big-endian length ``N``, then ``N``
bytes of UTF-8 JSON holding one object. This module is pure: it encodes and decodes
frames and builds requests, and opens no sockets, so it is tested with ``io.BytesIO``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from ._events import ClearOutput
from ._shared import constants
from .errors import ConnectionLost, ProtocolError
from .models import Display, ExecError, ExecResult, ResultLimits, StreamEvent

# Defined once, in the executor's constants.py (_shared.py).
PROTOCOL_VERSION = constants.PROTOCOL_VERSION
DEFAULT_FRAME_LIMIT = constants.DEFAULT_FRAME_LIMIT
NONCE_BYTES = constants.NONCE_BYTES
PROOF_BYTES = constants.PROOF_BYTES

Frame = dict[str, Any]
Event = StreamEvent | Display | ClearOutput | ExecResult

_HEADER = struct.Struct(">I")
_MAX_LENGTH = 2**32 - 1
_STATUSES = ("ok", "error", "timeout", "interrupted")
# Each side's proof gets its own label, so one side's proof is never valid as the other's.
_PROOF_LABELS = {"server": constants.SERVER_PROOF_LABEL, "client": constants.CLIENT_PROOF_LABEL}


class Readable(Protocol):
    """Anything with a ``read(n)`` that returns at most ``n`` bytes, ``b""`` at EOF."""

    def read(self, n: int, /) -> bytes: ...


def encode(obj: Frame) -> bytes:
    """Encode one message as a frame: length prefix, then compact UTF-8 JSON.

    Raises:
        ProtocolError: ``obj`` is not JSON-serialisable (or holds NaN/infinity),
            or its encoding is longer than a 4-byte length can describe.
    """
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"cannot encode a frame: {exc}") from exc
    body = text.encode("utf-8")
    if len(body) > _MAX_LENGTH:
        raise ProtocolError(f"a frame of {len(body)} bytes is too long to send")
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> Frame:
    """Decode a frame body (without its length prefix) into a dict.

    Raises:
        ProtocolError: the body is not UTF-8 JSON, or the JSON is not an object.
    """
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"received a frame that is not UTF-8 JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"received a frame holding a JSON {type(obj).__name__}, not an object")
    return obj


def read_frame(stream: Readable, limit: int = DEFAULT_FRAME_LIMIT) -> Frame | None:
    """Read one frame from ``stream``; return ``None`` on a clean EOF before it.

    Short reads are fine: ``stream.read`` is called until the frame is complete.
    The body of a frame longer than ``limit`` is never read or allocated.

    Raises:
        ConnectionLost: the stream ended in the middle of a frame.
        ProtocolError: the length is above ``limit``, or the body is not a JSON object.
    """
    header = _read_exact(stream, _HEADER.size, allow_eof=True)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > limit:
        raise ProtocolError(f"received a frame of {length} bytes, above the limit of {limit} bytes")
    body = _read_exact(stream, length, allow_eof=False)
    assert body is not None
    return decode_body(body)


def _read_exact(stream: Readable, n: int, *, allow_eof: bool) -> bytes | None:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            if got == 0 and allow_eof:
                return None
            raise ConnectionLost(
                f"the connection closed in the middle of a frame ({got} of {n} bytes read)"
            )
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def parse_event(frame: Frame) -> Event | None:
    """Turn a ``stream``, ``display``, ``clear_output`` or ``result`` frame into its model.

    Returns ``None`` for every other type (``ack``, ``error``, future additions).
    The result carries no output: that arrived in the stream and display frames.

    Raises:
        ProtocolError: the frame is malformed.
    """
    kind = frame.get("type")
    try:
        if kind == "stream":
            name, text = frame["name"], frame["text"]
            if name in ("stdout", "stderr") and isinstance(text, str):
                return StreamEvent(name=name, text=text)
        elif kind == "display":
            display = Display.from_wire(frame["data"])
            if isinstance(frame.get("display_id"), str):
                display = Display(display.data, frame["display_id"], frame.get("update") is True)
            return display
        elif kind == "clear_output":
            return ClearOutput(wait=frame.get("wait") is True)
        elif kind == "result":
            error, value, count = (
                frame.get("error"),
                frame.get("value"),
                frame.get("execution_count"),
            )
            if frame.get("status") in _STATUSES:
                return ExecResult(
                    status=frame["status"],
                    value=None if value is None else str(value),
                    error=None if error is None else ExecError.from_wire(error),
                    duration_ms=float(frame.get("duration_ms") or 0.0),
                    truncated=bool(frame.get("truncated")),
                    restarted=bool(frame.get("restarted")),
                    rolled_back=bool(frame.get("rolled_back")),
                    execution_count=count if type(count) is int else None,
                )
        else:
            return None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"received a malformed {kind} frame: {exc!r}") from exc
    raise ProtocolError(f"received a malformed {kind} frame: {frame!r:.200}")


# Requests. Each returns the message as a dict; ``encode`` turns it into a frame.


# The handshake (docs/protocol.md): each side proves it knows the session token by an
# HMAC over both sides' fresh nonces; the token itself never crosses the wire.


def hello(nonce: bytes) -> Frame:
    """The client's first frame: its fresh nonce (``NONCE_BYTES`` random bytes)."""
    return {"op": "hello", "protocol": PROTOCOL_VERSION, "nonce": b64(nonce)}


def auth(proof: bytes) -> Frame:
    """The client's second frame, sent only once the server's proof checked out."""
    return {"op": "auth", "proof": b64(proof)}


def proof(
    token: str, side: Literal["server", "client"], client_nonce: bytes, server_nonce: bytes
) -> bytes:
    """HMAC-SHA256 keyed by the token over ``side``'s label and both nonces."""
    message = _PROOF_LABELS[side] + client_nonce + server_nonce
    return hmac.new(token.encode("utf-8"), message, hashlib.sha256).digest()


def challenge_nonce(frame: Frame, token: str, client_nonce: bytes) -> bytes | None:
    """The server's nonce from a ``challenge`` whose proof checks out, else ``None``."""
    if frame.get("type") != "challenge" or frame.get("protocol") != PROTOCOL_VERSION:
        return None
    server_nonce = unb64(frame.get("nonce"), NONCE_BYTES)
    claimed = unb64(frame.get("proof"), PROOF_BYTES)
    if server_nonce is None or claimed is None:
        return None
    expected = proof(token, "server", client_nonce, server_nonce)
    return server_nonce if hmac.compare_digest(claimed, expected) else None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value: object, size: int) -> bytes | None:
    """Strict base64 of exactly ``size`` bytes, else ``None``."""
    if not isinstance(value, str) or len(value) > 4 * size:
        return None
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if len(data) == size else None


def exec_(
    id: str, code: str, timeout: float | None, output_limit: int | None,
    *, limits: ResultLimits | None = None, allow_stdin: bool = False, store_history: bool = True,
    env: Mapping[str, str] | None = None,
    rollback: bool = False,
) -> Frame:  # fmt: skip
    """Run ``code``; ``timeout=None`` means no timeout, ``output_limit=None`` the default.

    ``limits`` adds the caps on displays, the value and the error (``ResultLimits``).
    ``allow_stdin``: the client answers ``input_request`` frames; ``store_history=False``:
    the cell neither counts (``execution_count``) nor sets ``_``; ``env``: environment
    variables set for this execution only; ``rollback`` undoes
    the code's changes if it fails (docs/snapshots.md).
    """
    message: Frame = {"op": "exec", "id": id, "code": code, "timeout": timeout}
    if rollback:
        message["rollback"] = True
    if allow_stdin:
        message["allow_stdin"] = True
    if not store_history:
        message["store_history"] = False
    if output_limit is not None:
        message["output_limit"] = output_limit
    if limits is not None:
        message["display_limit"] = limits.displays
        message["value_limit"] = limits.value
        message["error_limit"] = limits.error
    if env:
        message["env"] = dict(env)
    return message


def input_reply(id: str, seq: int, value: str | None) -> Frame:
    """The answer to the ``input_request`` ``seq`` of execution ``id`` (None: EOF)."""
    return {"op": "input_reply", "id": id, "seq": seq, "value": value}


def interrupt(id: str) -> Frame:
    """Raise ``KeyboardInterrupt`` in the execution ``id``."""
    return {"op": "interrupt", "id": id}


def ping() -> Frame:
    return {"op": "ping"}


def reset() -> Frame:
    """Replace the worker process: every variable is gone."""
    return {"op": "reset"}


def put_file(id: str, path: str, data: bytes, mode: int, *, offset: int | None = None) -> Frame:
    """Write ``data`` to ``path`` in the container (relative to ``/workspace``).

    With ``offset``, a chunk: 0 creates (truncates) the file, a later chunk appends
    at ``offset``, which must be the file's size.
    """
    message: Frame = {
        "op": "put_file",
        "id": id,
        "path": path,
        "data": base64.b64encode(data).decode("ascii"),
        "mode": mode,
    }
    if offset is not None:
        message["offset"] = offset
    return message


def get_file(
    id: str, path: str, max_bytes: int, *, offset: int | None = None, length: int | None = None
) -> Frame:
    """Read ``path`` from the container, refused if larger than ``max_bytes``; with
    ``length``, the chunk of at most ``length`` bytes from ``offset``."""
    message: Frame = {"op": "get_file", "id": id, "path": path, "max_bytes": max_bytes}
    if length is not None:
        message.update(offset=offset or 0, length=length)
    return message


# Checkpoints (docs/snapshots.md, Tier 1): answered by a ``checkpoint`` frame.


def checkpoint(name: str | None, files: bool) -> Frame:
    """Park a copy of the Python process under ``name`` (None: the executor picks)."""
    return {"op": "checkpoint", "name": name, "files": files}


def restore(name: str) -> Frame:
    return {"op": "restore", "name": name}


def drop(name: str) -> Frame:
    return {"op": "drop", "name": name}


def checkpoints() -> Frame:
    return {"op": "checkpoints"}


# Forks (docs/snapshots.md, Tier 1): branches of one executor, each its own worker.


def fork(name: str) -> Frame:
    """A new branch ``name`` starting from a copy of this connection's branch."""
    return {"op": "fork", "name": name}


def branch(name: str) -> Frame:
    """Talk to the fork ``name`` on this connection from now on."""
    return {"op": "branch", "name": name}


def close_fork(name: str) -> Frame:
    return {"op": "close_fork", "name": name}


def list_files(id: str, path: str, *, recursive: bool, limit: int) -> Frame:
    """The entries under ``path`` (the whole tree with ``recursive``), at most ``limit``."""
    return {"op": "list_files", "id": id, "path": path, "recursive": recursive, "limit": limit}


def remove_file(id: str, path: str, *, recursive: bool) -> Frame:
    """Remove a file, a symlink or an empty directory (a whole tree with ``recursive``)."""
    return {"op": "remove_file", "id": id, "path": path, "recursive": recursive}


def make_dir(id: str, path: str) -> Frame:
    """Create a directory and its parents."""
    return {"op": "make_dir", "id": id, "path": path}


def run(
    id: str, argv: list[str], *, cwd: str | None, env: dict[str, str] | None,
    timeout: float | None, output_limit: int | None,
) -> Frame:  # fmt: skip
    """Run the program ``argv`` (no shell unless ``argv`` starts one) in the container."""
    message: Frame = {"op": "run", "id": id, "argv": list(argv), "timeout": timeout}
    for key, value in (("cwd", cwd), ("env", env), ("output_limit", output_limit)):
        if value is not None:
            message[key] = value
    return message
