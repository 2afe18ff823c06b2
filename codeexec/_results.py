"""The results of shell commands and of file listings and directory copies.

Frozen dataclasses like those of ``models.py`` (kept apart: that module is full);
re-exported from ``codeexec``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

FileKind = Literal["file", "directory", "symlink", "other"]


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one shell command (``ContainerSession.run``).

    ``exit_code`` follows the shell's convention: 0 for success, ``128 + N`` when
    signal ``N`` ended it (then ``signal`` is ``N``), 127 for a program that does
    not exist. ``timed_out`` means the timeout ended it (SIGTERM to its process
    group, SIGKILL if it did not stop); ``interrupted`` that ``interrupt()`` did.
    ``truncated`` means the output passed the output limit and the rest was dropped.
    """

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration_ms: float = 0.0
    timed_out: bool = False
    interrupted: bool = False
    signal: int | None = None
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FileInfo:
    """One entry of a remote directory (``session.files.list``).

    ``path`` is what to pass back to ``read_file``/``remove``: the listed path
    joined with ``name``. A symlink is reported as itself, never followed.
    """

    name: str
    path: str
    kind: FileKind
    size: int = 0
    mode: int = 0
    mtime: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DirTransfer:
    """What ``upload_dir`` / ``download_dir`` copied: files, bytes, and what they skipped
    (symlinks and special files, which are never followed or recreated)."""

    files: int
    bytes: int
    directories: int
    skipped: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "skipped": list(self.skipped)}
