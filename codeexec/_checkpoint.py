"""What a checkpoint is, as the library returns it (docs/snapshots.md, Tier 1)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidOption

_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # the executor's rule (checkpoints.py)


def validate_tag(tag: str) -> str:
    """A checkpoint name as the executor accepts it, else ``InvalidOption``."""
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise InvalidOption(
            f"bad checkpoint name {tag!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return tag


@dataclass(frozen=True)
class Checkpoint:
    """A saved state of a session's Python process, kept inside its container.

    ``name`` identifies it in the session (``restore``, ``drop``). ``files`` says
    whether /workspace was saved too. ``alive`` is False once the parked process
    holding it was killed (say at the memory limit): it cannot be restored then.
    ``private_bytes`` is the memory only this checkpoint holds (pages the session
    changed since), None where the executor cannot read it. ``duration_ms`` is
    what the checkpoint (or restore) took inside the container.
    """

    name: str
    created: float = 0.0  # seconds since the epoch, as the container's clock says
    files: bool = False
    alive: bool = True
    private_bytes: int | None = None
    duration_ms: float = 0.0

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Checkpoint:
        private = data.get("private_bytes")
        return cls(
            name=str(data["name"]),
            created=float(data.get("created") or 0.0),
            files=bool(data.get("files")),
            alive=data.get("alive") is not False,
            private_bytes=private if isinstance(private, int) else None,
            duration_ms=float(data.get("duration_ms") or 0.0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created,
            "files": self.files,
            "alive": self.alive,
            "private_bytes": self.private_bytes,
            "duration_ms": self.duration_ms,
        }
