"""put_file / get_file: small, synchronous file transfers relative to the cwd."""

from __future__ import annotations

import base64
import binascii
import os


def _error(req: dict, code: str, message: str) -> dict:
    return {"type": "error", "id": req.get("id"), "code": code, "message": message}


def _path(req: dict) -> str | None:
    path = req.get("path")
    if not isinstance(path, str) or not path or "\0" in path:
        return None
    return os.path.abspath(path)  # relative paths are relative to the cwd


def put_file(req: dict) -> dict:
    path = _path(req)
    data, mode = req.get("data"), req.get("mode", 0o644)
    if path is None:
        return _error(req, "bad_request", "'path' must be a non-empty string")
    if req["path"].endswith("/"):  # abspath would drop the slash and write a file
        return _error(req, "io_error", "cannot write %s: it names a directory; "
                      "give the file's name" % req["path"])
    if not isinstance(data, str):
        return _error(req, "bad_request", "'data' must be a base64 string")
    if mode is None:
        mode = 0o644
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        return _error(req, "bad_request", "'mode' must be an integer permission mode")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        return _error(req, "bad_request", "'data' is not valid base64: %s" % exc)
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(path, mode)
    except OSError as exc:
        return _error(req, "io_error", "cannot write %s: %s" % (
            req.get("path"), exc.strerror or exc))
    return {"type": "ack", "op": "put_file", "id": req.get("id"), "size": len(raw)}


def get_file(req: dict, default_max: int) -> dict:
    path = _path(req)
    max_bytes = req.get("max_bytes", default_max)
    if max_bytes is None:
        max_bytes = default_max
    if path is None:
        return _error(req, "bad_request", "'path' must be a non-empty string")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        return _error(req, "bad_request", "'max_bytes' must be an integer >= 0")
    name = req.get("path")
    try:
        size = os.stat(path).st_size
        if os.path.isdir(path):
            return _error(req, "io_error", "%s is a directory" % name)
        if size > max_bytes:
            return _error(req, "too_large", "%s is %d bytes, more than the limit of %d"
                          % (name, size, max_bytes))
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        return _error(req, "not_found", "no such file: %s" % name)
    except OSError as exc:
        return _error(req, "io_error", "cannot read %s: %s" % (name, exc.strerror or exc))
    if len(raw) > max_bytes:  # grew since stat
        return _error(req, "too_large", "%s is more than the limit of %d bytes"
                      % (name, max_bytes))
    return {"type": "file", "id": req.get("id"), "path": name,
            "data": base64.b64encode(raw).decode("ascii"), "size": len(raw)}
