"""Where whole-session snapshots live on the host, and their metadata.

One directory per snapshot under ``snapshot_root()``: ``$CODEEXEC_SNAPSHOT_DIR``,
else ``$XDG_CACHE_HOME/codeexec/snapshots`` (default ``~/.cache/...``). Each holds
``meta.json`` (mode 0600: it keeps the session token a checkpointed executor has in
its memory) and the method's files, each with its SHA-256 in the metadata. A
snapshot is written in a hidden staging directory and renamed into place, so a
crash never leaves a half-written snapshot under its name.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._addrcache import cache_root
from ._snapargs import METHODS, Method
from .errors import CodeexecError, SnapshotError
from .options import validate_name

FORMAT = 1  # of meta.json; a snapshot of another format is refused
META = "meta.json"


@dataclass(frozen=True)
class Snapshot:
    """A saved session: ``ContainerSession.resume(snapshot)`` starts a copy of it.

    ``method`` is ``"checkpoint"`` (the whole process tree, by the engine) or
    ``"portable"`` (``/workspace`` and the picklable names); ``unsaved`` lists the
    names a portable snapshot could not keep, each with the reason.
    """

    name: str
    method: Method
    session: str
    created: float
    size: int
    path: str
    image: str
    unsaved: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # how long taking it took
    scope: str | None = None  # the session's scope label (the MCP server's reach)

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.created)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "method": self.method, "session": self.session,
            "created": self.created, "age_seconds": round(self.age, 1), "size": self.size,
            "path": self.path, "image": self.image, "unsaved": dict(self.unsaved),
            "seconds": round(self.seconds, 3), "scope": self.scope,
        }  # fmt: skip


def snapshot_root() -> Path:
    """The directory that holds every snapshot (created on first use, mode 0700)."""
    explicit = os.environ.get("CODEEXEC_SNAPSHOT_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return cache_root() / "snapshots"


def staging(name: str) -> Path:
    """A fresh private directory to write snapshot ``name`` into (see ``publish``)."""
    validate_snapshot_name(name)
    root = snapshot_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = root / f".staging-{name}-{secrets.token_hex(4)}"
    path.mkdir(mode=0o700)
    return path


def publish(stage: Path, name: str, meta: dict[str, Any]) -> Snapshot:
    """Checksum the staged files, write ``meta.json`` and rename the stage into place."""
    files = {}
    for path in sorted(p for p in stage.rglob("*") if p.is_file()):
        files[str(path.relative_to(stage))] = {"size": path.stat().st_size, "sha256": _sha(path)}
    meta = {**meta, "format": FORMAT, "name": name, "files": files}
    meta_path = stage / META
    fd = os.open(meta_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)
    final = snapshot_root() / name
    if final.exists():
        shutil.rmtree(stage, ignore_errors=True)
        raise SnapshotError(f"a snapshot named {name!r} exists already: remove it first "
                            f"(`codeexec snapshots rm {name}`) or choose another name")  # fmt: skip
    os.rename(stage, final)
    return _snapshot(final, meta)


def validate_snapshot_name(name: str) -> str:
    try:
        return validate_name(name)
    except CodeexecError as exc:
        raise SnapshotError(str(exc).replace("session name", "snapshot name")) from None


def load(snapshot: Snapshot | str, *, verify: bool = True) -> tuple[Snapshot, dict[str, Any]]:
    """The snapshot and its full metadata, its files checked against their checksums.

    Raises:
        SnapshotError: missing, unreadable, of another format, or a file is missing or
            does not match its checksum (the message says which and what to do).
    """
    name = snapshot.name if isinstance(snapshot, Snapshot) else snapshot
    path = Path(snapshot.path) if isinstance(snapshot, Snapshot) else _path_of(name)
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SnapshotError(
            f"no snapshot named {name!r} in {path.parent}: `codeexec snapshots` lists them"
        ) from None
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"snapshot {name!r} is unreadable ({exc}); remove it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SnapshotError(f"snapshot {name!r} was written in another format "
                            f"({meta.get('format') if isinstance(meta, dict) else '?'}; this "
                            f"codeexec reads {FORMAT}); take it again")  # fmt: skip
    if meta.get("method") not in METHODS:
        raise SnapshotError(f"snapshot {name!r} has an unknown method {meta.get('method')!r}")
    for rel, want in (meta.get("files") or {}).items():
        file = path / rel
        if not file.is_file():
            raise SnapshotError(f"snapshot {name!r} is incomplete: {rel} is missing; remove it")
        if verify and (file.stat().st_size != want.get("size") or _sha(file) != want.get("sha256")):
            raise SnapshotError(
                f"snapshot {name!r} is corrupt: {rel} does not match its checksum; remove it "
                f"(`codeexec snapshots rm {name}`)"
            )
    return _snapshot(path, meta), meta


def list_snapshots() -> list[Snapshot]:
    """Every snapshot in ``snapshot_root()``, newest first (unreadable ones skipped)."""
    root = snapshot_root()
    found = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name.startswith("."):
            continue
        try:
            found.append(load(path.name, verify=False)[0])
        except SnapshotError:
            continue
    return sorted(found, key=lambda s: -s.created)


def remove(name: str) -> int:
    """Delete snapshot ``name``; returns the bytes freed.

    Raises:
        SnapshotError: there is no such snapshot.
    """
    path = _path_of(name)
    if not path.is_dir():
        raise SnapshotError(f"no snapshot named {name!r}: `codeexec snapshots` lists them")
    size = _size(path)
    shutil.rmtree(path)
    return size


def prune(older_than: float, *, dry_run: bool = False) -> list[tuple[str, int]]:
    """Remove snapshots at least ``older_than`` seconds old (0: all), and stale stages.

    Returns each removed (or, with ``dry_run``, removable) name with its size.
    """
    removed = []
    for snap in list_snapshots():
        if snap.age >= older_than:
            removed.append((snap.name, _size(Path(snap.path)) if dry_run else remove(snap.name)))
    root = snapshot_root()
    for stage in root.glob(".staging-*") if root.is_dir() else []:
        if time.time() - stage.stat().st_mtime >= max(older_than, 3600):  # not one being written
            removed.append((stage.name, _size(stage)))
            if not dry_run:
                shutil.rmtree(stage, ignore_errors=True)
    return removed


def _path_of(name: str) -> Path:
    return snapshot_root() / validate_snapshot_name(name)


def _snapshot(path: Path, meta: dict[str, Any]) -> Snapshot:
    unsaved = meta.get("unsaved") or {}
    return Snapshot(
        name=str(meta.get("name") or path.name),
        method=meta["method"],
        session=str(meta.get("session") or ""),
        created=float(meta.get("created") or 0.0),
        size=sum(int(f.get("size") or 0) for f in (meta.get("files") or {}).values()),
        path=str(path),
        image=str(meta.get("image") or ""),
        unsaved={str(k): str(v) for k, v in unsaved.items()},
        seconds=float(meta.get("seconds") or 0.0),
        scope=(meta.get("labels") or {}).get("codeexec.scope"),
    )


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()
