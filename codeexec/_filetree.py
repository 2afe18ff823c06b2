"""Remote files as a tree: ``session.files`` (list, remove, mkdir) and whole
directories up and down (``upload_dir``, ``download_dir``); a mixin of
``ContainerSession`` over ``_transfer.py``.

Symlinks and special files are never followed or recreated, on either side: they
are reported in ``DirTransfer.skipped``. The executor's listing names every path of
a download; each is checked (no ``..``, no absolute path) and written only where it
resolves inside the local directory, so neither a hostile name nor a host symlink
leads a file elsewhere.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path

from ._fileclient import LIST_LIMIT
from ._results import DirTransfer, FileInfo, FileKind
from ._transfer import FilesAndPackages
from .errors import FileTransferError, ProtocolError

_KINDS: tuple[FileKind, ...] = ("file", "directory", "symlink", "other")


class RemoteFiles:
    """The session's files, seen from the host: ``session.files``."""

    def __init__(self, session: FileTree) -> None:
        self._session = session

    def list(self, path: str = ".", *, recursive: bool = False) -> list[FileInfo]:
        """The entries of the directory ``path`` (relative to /workspace), sorted by
        name (``recursive``: the whole tree, each directory before its contents); a
        file lists as itself. Symlinks are listed as themselves, never followed.

        Raises:
            FileTransferError: missing or unreadable, or more than 100,000 entries.
        """
        with self._session._using() as client:
            frame = client.list_files(path, recursive=recursive, limit=LIST_LIMIT)
        if frame.get("truncated"):
            raise FileTransferError(
                f"{path} holds more than {LIST_LIMIT} entries; list a subdirectory",
                code="too_large",
            )
        return [_info(path, e) for e in frame["entries"]]

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file, a symlink (not its target) or an empty directory; with
        ``recursive``, a directory and everything in it.

        Raises:
            FileTransferError: missing, a non-empty directory without ``recursive``,
                ``/``, /workspace itself, or anything in /proc.
        """
        with self._session._using() as client:
            client.remove_file(path, recursive=recursive)

    def mkdir(self, path: str) -> None:
        """Create a directory and its parents (an existing one is fine)."""
        with self._session._using() as client:
            client.make_dir(path)


def _info(listed: str, entry: object) -> FileInfo:
    try:
        assert isinstance(entry, dict)
        rel, kind = str(entry["path"]), entry["kind"]
        return FileInfo(
            name=posixpath.basename(rel or listed.rstrip("/")) or listed,
            path=posixpath.join(listed, rel) if rel else listed,
            kind=kind if kind in _KINDS else "other",
            size=int(entry["size"]),
            mode=int(entry["mode"]),
            mtime=float(entry["mtime"]),
        )
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"the executor sent a malformed listing entry: {exc!r}") from exc


def _safe_parts(rel: str) -> list[str] | None:
    parts = rel.split("/")
    if any(p in ("", ".", "..") or "\0" in p or os.sep in p for p in parts):
        return None
    return parts


class FileTree(FilesAndPackages):
    """``files``, ``upload_dir`` and ``download_dir``."""

    @property
    def files(self) -> RemoteFiles:
        """List, remove and create remote files: ``session.files.list("results")``."""
        return RemoteFiles(self)

    def upload_dir(self, local_dir: str | os.PathLike[str], remote_dir: str) -> DirTransfer:
        """Copy the contents of the host directory ``local_dir`` into ``remote_dir``
        (created, with its parents; relative to /workspace), recursively.

        Regular files and directories are copied (files keep their permission bits);
        symlinks and special files are skipped, never followed (``skipped``).

        Raises:
            FileTransferError: ``local_dir`` is not a directory, or a file failed.
        """
        root = Path(local_dir)
        if not root.is_dir():
            raise FileTransferError(f"{root} is not a directory; use upload() for a file")
        remote_dir = remote_dir or "."
        files = size = dirs = 0
        skipped: list[str] = []
        self.files.mkdir(remote_dir)
        for here, dirnames, filenames in os.walk(root):
            rel = Path(here).relative_to(root).as_posix()
            remote_here = remote_dir if rel == "." else posixpath.join(remote_dir, rel)
            for name in sorted(dirnames):
                if os.path.islink(os.path.join(here, name)):
                    skipped.append(posixpath.normpath(posixpath.join(rel, name)))
                    continue  # os.walk does not descend into it either
                self.files.mkdir(posixpath.join(remote_here, name))
                dirs += 1
            for name in sorted(filenames):
                local = os.path.join(here, name)
                if not stat.S_ISREG(os.lstat(local).st_mode):
                    skipped.append(posixpath.normpath(posixpath.join(rel, name)))
                    continue
                size += self.upload(local, posixpath.join(remote_here, name))
                files += 1
        return DirTransfer(files=files, bytes=size, directories=dirs, skipped=tuple(skipped))

    def download_dir(self, remote_dir: str, local_dir: str | os.PathLike[str]) -> DirTransfer:
        """Copy the contents of ``remote_dir`` (relative to /workspace) into the host
        directory ``local_dir`` (created), recursively; files stream to disk.

        Symlinks and special files are skipped (``skipped``), never recreated; a
        name that would land outside ``local_dir`` is skipped too.

        Raises:
            FileTransferError: ``remote_dir`` is missing or a file, it holds more
                than 100,000 entries, or a file failed.
        """
        entries = self.files.list(remote_dir, recursive=True)
        if len(entries) == 1 and entries[0].path == remote_dir and entries[0].kind != "directory":
            raise FileTransferError(f"{remote_dir} is not a directory; use download() for a file")
        root = Path(local_dir)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FileTransferError(f"cannot create {root}: {exc.strerror}") from None
        real_root = root.resolve()
        files = size = dirs = 0
        skipped: list[str] = []
        base = remote_dir.rstrip("/")
        prefix = len(base) + 1 if base else 1  # entries are remote_dir/REL ("/REL" for /)
        for entry in entries:
            rel = entry.path[prefix:]
            parts = _safe_parts(rel)
            target = root.joinpath(*parts) if parts else root
            if (
                parts is None
                or entry.kind not in ("file", "directory")
                or not target.parent.resolve().is_relative_to(real_root)
            ):
                skipped.append(rel)
                continue
            if entry.kind == "directory":
                try:
                    target.mkdir(exist_ok=True)
                except OSError as exc:
                    raise FileTransferError(f"cannot create {target}: {exc.strerror}") from None
                dirs += 1
                continue
            size += self.download(entry.path, target).stat().st_size
            files += 1
        return DirTransfer(files=files, bytes=size, directories=dirs, skipped=tuple(skipped))
