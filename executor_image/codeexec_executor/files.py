"""put_file / get_file: synchronous file transfers relative to the cwd, whole or
in chunks (``offset``; ``length`` for reads), so no file needs one frame.

They run inside the supervisor's single-threaded loop, so they must never block:
every open is non-blocking (a FIFO without a peer fails instead of waiting; one
with a peer, a device or a socket is refused after fstat), and only regular files
outside /proc are read or written. The supervisor runs as the session's user, so a
symlink only leads where the code could go itself, except into the supervisor's
own /proc/self (its environment holds the session token): refused by device.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import stat

# Non-blocking, and never a controlling terminal for PID 1.
_OPEN_FLAGS = os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


def _procfs_dev() -> int | None:
    try:
        return os.stat("/proc").st_dev
    except OSError:
        return None


def _refusal(st: os.stat_result, name: str) -> str | None:
    """Why an opened file may not be transferred, or None for a regular file."""
    if stat.S_ISDIR(st.st_mode):
        return f"{name} is a directory"
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device or special file"
        )
        return f"{name} is {kind}: only regular files can be transferred"
    if st.st_dev == _procfs_dev():
        return f"{name} is in /proc: process files are not transferred"
    return None


def _checked(fd: int, name: str) -> str | None:
    """_refusal for an open descriptor, which it closes when refused."""
    try:
        refused = _refusal(os.fstat(fd), name)
    except OSError:
        os.close(fd)
        raise
    if refused:
        os.close(fd)
    return refused


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ENXIO:  # a FIFO without a reader, or a socket
        return "it is a FIFO or a socket: only regular files can be transferred"
    return exc.strerror or str(exc)


def _error(req: dict, code: str, message: str) -> dict:
    return {"type": "error", "id": req.get("id"), "code": code, "message": message}


def _path(req: dict) -> str | None:
    path = req.get("path")
    if not isinstance(path, str) or not path or "\0" in path:
        return None
    return os.path.abspath(path)  # relative paths are relative to the cwd


def _offset(req: dict, key: str = "offset") -> int | None:
    value = req.get(key, 0)
    if value is None:
        value = 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def put_file(req: dict) -> dict:
    path = _path(req)
    data, mode = req.get("data"), req.get("mode", 0o644)
    offset = _offset(req)
    if offset is None:
        return _error(req, "bad_request", "'offset' must be an integer >= 0")
    if path is None:
        return _error(req, "bad_request", "'path' must be a non-empty string")
    if req["path"].endswith("/"):  # abspath would drop the slash and write a file
        return _error(
            req,
            "io_error",
            f"cannot write {req['path']}: it names a directory; give the file's name",
        )
    if not isinstance(data, str):
        return _error(req, "bad_request", "'data' must be a base64 string")
    if mode is None:
        mode = 0o644
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        return _error(req, "bad_request", "'mode' must be an integer permission mode")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        return _error(req, "bad_request", f"'data' is not valid base64: {exc}")
    try:
        if offset == 0:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            # O_TRUNC does nothing to a FIFO or a device, and they are refused below
            # before anything is written.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _OPEN_FLAGS, mode)
        else:  # a later chunk: the file the first one made, exactly that long
            fd = os.open(path, os.O_WRONLY | _OPEN_FLAGS)
        refused = _checked(fd, req["path"])
        if refused:
            return _error(req, "io_error", f"cannot write: {refused}")
        with os.fdopen(fd, "wb") as f:
            if offset and os.fstat(fd).st_size != offset:
                return _error(req, "io_error", f"{req['path']} changed during the upload")
            f.seek(offset)
            f.write(raw)
            if offset == 0:
                os.fchmod(fd, mode)
    except OSError as exc:
        return _error(req, "io_error", f"cannot write {req.get('path')}: {_os_problem(exc)}")
    ack = {"type": "ack", "op": "put_file", "id": req.get("id"), "size": len(raw)}
    if "offset" in req:
        ack["offset"] = offset  # tells the host that this executor writes in chunks
    return ack


def get_file(req: dict, default_max: int) -> dict:
    """The whole file (at most ``max_bytes``), or with ``length`` one chunk of it:
    at most ``length`` bytes (and a frame's worth) from ``offset``, with ``total``."""
    path = _path(req)
    max_bytes = req.get("max_bytes", default_max)
    if max_bytes is None:
        max_bytes = default_max
    offset, length = _offset(req), _offset(req, "length")
    if path is None:
        return _error(req, "bad_request", "'path' must be a non-empty string")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        return _error(req, "bad_request", "'max_bytes' must be an integer >= 0")
    if offset is None or length is None:
        return _error(req, "bad_request", "'offset' and 'length' must be integers >= 0")
    chunked = "length" in req and req["length"] is not None
    if chunked:
        length = min(length, default_max)  # and a frame's worth
    else:  # the whole file: one byte more than allowed shows it grew
        offset, length = 0, max_bytes + 1
    got = _read(req, path, max_bytes, offset, length)
    if isinstance(got, dict):
        return got  # the error frame
    raw, total = got
    name: str = req["path"]  # a string: _path checked it
    frame = {
        "type": "file",
        "id": req.get("id"),
        "path": name,
        "data": base64.b64encode(raw).decode("ascii"),
        "size": len(raw),
    }
    if chunked:
        frame.update(offset=offset, total=total)
    elif len(raw) > max_bytes:  # grew since stat
        return _error(req, "too_large", f"{name} is more than the limit of {max_bytes} bytes")
    return frame


def _read(req: dict, path: str, max_bytes: int, offset: int, length: int):
    """(at most ``length`` bytes from ``offset``, the file's size), or an error frame:
    the file opened without following a link, checked, and no larger than ``max_bytes``."""
    name: str = req["path"]
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
        refused = _checked(fd, name)
        if refused:
            return _error(req, "io_error", refused)
        with os.fdopen(fd, "rb") as f:
            total = os.fstat(fd).st_size
            if total > max_bytes:
                return _error(
                    req, "too_large", f"{name} is {total} bytes, more than the limit of {max_bytes}"
                )
            f.seek(offset)
            return f.read(length), total
    except FileNotFoundError:
        return _error(req, "not_found", f"no such file: {name}")
    except OSError as exc:
        return _error(req, "io_error", f"cannot read {name}: {_os_problem(exc)}")
