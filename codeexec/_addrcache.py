"""Where running sessions were last seen, so a new process reaches one without docker.

`codeexec exec` in a fresh process would otherwise spend two docker CLI calls
(~40–80 ms) finding the container before a sub-millisecond execution. This cache
is never the source of truth — Docker labels are: an entry is used only when the
executor at the remembered address completes a handshake with the remembered
token, which proves it is the same session; anything else falls back to the label
lookup and drops the entry.

Entries hold the session token, so the directory is 0700 and files 0600. An entry
steers where the token and the code go, so a directory (``codeexec/`` and each one
below it) that is not ours or that others may write, and a file that is not ours,
not a regular file or writable by others, are ignored: the label lookup answers
instead. ``session_lock`` (``start``'s per-name lock) keeps its files here too.
``CODEEXEC_SESSION_CACHE=0`` turns the cache off; ``XDG_CACHE_HOME`` moves it.
"""

from __future__ import annotations

import json
import os
import stat
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .models import SessionRef

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def cache_root() -> Path:
    """codeexec's folder in the user's cache: ``$XDG_CACHE_HOME/codeexec``, else
    ``~/.cache/codeexec`` (the session cache, snapshots and podman's directory)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "codeexec"


def _engine_directory() -> tuple[Path, Path]:
    """The cache's root (``…/codeexec``) and this engine's folder below it."""
    # One folder per engine: the same session name on two engines is two sessions.
    engine = "\0".join(
        os.environ.get(k, "") for k in ("CODEEXEC_DOCKER", "DOCKER_HOST", "DOCKER_CONTEXT")
    )
    key = f"{zlib.crc32(engine.encode()):08x}"
    root = cache_root()
    return root, root / "sessions" / key


def _directory(*, create: bool = False) -> Path | None:
    """This engine's cache folder if it is ours and private (made so when ``create``)."""
    if os.environ.get("CODEEXEC_SESSION_CACHE", "1") in ("0", "", "false", "no"):
        return None
    return _private_directory(create=create)


def _private_directory(*, create: bool) -> Path | None:
    root, directory = _engine_directory()
    for path in (root, directory.parent, directory):
        try:
            if create and not os.path.lexists(path):
                os.makedirs(path, 0o700, exist_ok=True)
            info = os.lstat(path)
        except OSError:
            return None
        if not _ours(info, stat.S_ISDIR):
            return None
    return directory


def _ours(info: os.stat_result, is_kind: Callable[[int], bool]) -> bool:
    """Of that kind (not a symlink), owned by us, and not writable by anyone else."""
    return (
        bool(is_kind(info.st_mode))
        and info.st_uid == os.geteuid()
        and not (info.st_mode & _OTHERS_WRITE)
    )


def recall(name: str) -> SessionRef | None:
    """The remembered ``SessionRef`` of session ``name``, if any."""
    directory = _directory()
    if directory is None:
        return None
    try:
        fd = os.open(directory / f"{name}.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, encoding="utf-8") as f:
            if not _ours(os.fstat(f.fileno()), stat.S_ISREG):
                return None
            ref = SessionRef.from_json(json.loads(f.read()))
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return None  # unreadable, or written by another version: the labels answer
    return ref if ref.id and ref.token else None


def remember(name: str, ref: SessionRef) -> None:
    """Keep what reaching the session needs: the ref (id, labels, token, address)."""
    directory = _directory(create=True)
    if directory is None:
        return
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # created 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(ref.to_json(), f)
        os.replace(tmp, directory / f"{name}.json")
    except OSError:
        pass  # a cache that cannot be written only costs speed


def forget(name: str, container_id: str | None = None) -> None:
    """Drop the entry (only if it still names ``container_id``, when given)."""
    directory = _directory()
    if directory is None:
        return
    if container_id is not None:
        entry = recall(name)
        if entry is None or entry.id != container_id:
            return
    try:
        (directory / f"{name}.json").unlink()
    except OSError:
        pass


@contextmanager
def session_lock(name: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the per-name lock (``flock``) of session ``name`` on this engine.

    ``ContainerSession.start`` holds it from its lookup to its ``docker run``, so two
    processes starting one name make one container: the second one attaches. Without
    a private cache folder (or ``fcntl``) there is no lock, as before it existed.
    ``on_wait`` hears when another process holds it (it may be building an image).
    """
    directory = _private_directory(create=True)
    fd = -1
    if directory is not None and fcntl is not None:
        try:
            fd = os.open(
                directory / f"{name}.lock",
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except OSError:
            fd = -1
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(f"waiting for another start of session {name!r} to finish")
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the lock


def _engine_file(engine: str, *, create: bool = False) -> Path | None:
    """Where what is known of one engine's place (``_locality.py``) is kept."""
    directory = _directory(create=create)
    if directory is None:
        return None
    return directory / f"{zlib.crc32(engine.encode()):08x}.engine"


def recall_engine(engine: str) -> str:
    """``"local"`` or ``"remote"`` as remembered for ``engine``; "" when unknown."""
    path = _engine_file(engine)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK) if path else -1
    except OSError:
        return ""
    if fd < 0:
        return ""
    try:
        with os.fdopen(fd, encoding="utf-8") as f:
            if not _ours(os.fstat(f.fileno()), stat.S_ISREG):
                return ""
            data = json.loads(f.read())
    except (OSError, ValueError):
        return ""
    found = data.get("place") if isinstance(data, dict) and data.get("engine") == engine else ""
    return found if found in ("local", "remote") else ""


def remember_engine(engine: str, place: str) -> None:
    path = _engine_file(engine, create=True)
    if path is None:
        return
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"engine": engine, "place": place}, f)
        os.replace(tmp, path)
    except OSError:
        pass
