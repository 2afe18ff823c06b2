"""list_files, remove_file and make_dir: the session's files seen and changed from
the host (``session.files``; docs/protocol.md, "Files").

Like files.py they run inside the supervisor's loop, as the session's user, so they
reach only what the code could reach itself. Symlinks are reported and removed as
themselves, never followed; nothing on /proc is listed into or removed; a listing
stops at ``limit`` entries (``truncated``), so a huge tree cannot wedge the loop
for long or grow a frame past its limit.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

from .files import _error, _path, _procfs_dev

DEFAULT_LIMIT = 10000
MAX_LIMIT = 100000


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _entry(rel: str, st: os.stat_result) -> dict:
    return {
        "path": rel,
        "kind": _kind(st.st_mode),
        "size": st.st_size,
        "mode": stat.S_IMODE(st.st_mode),
        "mtime": st.st_mtime,
    }


def list_files(req: dict) -> dict:
    """The entries under ``path`` (``recursive``: the whole tree, parents first),
    each with its path relative to ``path``; a file lists as itself (path "")."""
    path = _path(req)
    limit = req.get("limit", DEFAULT_LIMIT)
    if path is None:
        return _error(req, "bad_request", "'path' must be a non-empty string")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
        return _error(req, "bad_request", f"'limit' must be an integer from 1 to {MAX_LIMIT}")
    name = req["path"]
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return _error(req, "not_found", f"no such file or directory: {name}")
    except OSError as exc:
        return _error(req, "io_error", f"cannot list {name}: {exc.strerror}")
    entries: list = []
    truncated = False
    if not stat.S_ISDIR(st.st_mode):
        entries.append(_entry("", st))
    else:
        proc = _procfs_dev()
        pending = [""]
        while pending and not truncated:
            rel_dir = pending.pop(0)
            try:
                with os.scandir(os.path.join(path, rel_dir)) as it:
                    children = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                if not rel_dir:
                    return _error(req, "io_error", f"cannot list {name}: {exc.strerror}")
                continue  # an unreadable subdirectory: listed, not entered
            for child in children:
                if len(entries) >= limit:
                    truncated = True
                    break
                rel = os.path.join(rel_dir, child.name) if rel_dir else child.name
                try:
                    cst = child.stat(follow_symlinks=False)
                except OSError:
                    continue  # gone meanwhile
                entries.append(_entry(rel, cst))
                if req.get("recursive") and stat.S_ISDIR(cst.st_mode) and cst.st_dev != proc:
                    pending.append(rel)
    return {"type": "files", "id": req.get("id"), "path": name, "entries": entries,
            "truncated": truncated}  # fmt: skip


def remove_file(req: dict) -> dict:
    """Remove a file, a symlink (itself) or an empty directory; with ``recursive`` a
    whole tree (symlinks in it removed, never followed)."""
    path = _path(req)
    if path is None:
        return _error(req, "bad_request", "'path' must be a non-empty string")
    name = req["path"]
    if path == "/" or path == os.getcwd():
        return _error(
            req, "io_error", f"refusing to remove {name}: it is / or the working directory"
        )
    try:
        st = os.lstat(path)
        if st.st_dev == _procfs_dev():
            return _error(req, "io_error", f"{name} is in /proc: process files are not removed")
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
        elif req.get("recursive"):
            shutil.rmtree(path)  # does not follow symlinks (fd-based on Linux)
        else:
            try:
                os.rmdir(path)
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    raise
                why = f"{name} is a directory that is not empty; remove it recursively"
                return _error(req, "io_error", why)
    except FileNotFoundError:
        return _error(req, "not_found", f"no such file or directory: {name}")
    except OSError as exc:
        return _error(req, "io_error", f"cannot remove {name}: {exc.strerror}")
    return {"type": "ack", "op": "remove_file", "id": req.get("id"), "path": name}


def make_dir(req: dict) -> dict:
    """Create a directory and its parents (an existing one is fine)."""
    path = _path(req)
    if path is None:
        return _error(req, "bad_request", "'path' must be a non-empty string")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        return _error(req, "io_error", f"cannot create the directory {req['path']}: {exc.strerror}")
    return {"type": "ack", "op": "make_dir", "id": req.get("id"), "path": req["path"]}
