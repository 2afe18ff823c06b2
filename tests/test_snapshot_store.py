"""_snapstore: where snapshots live, their checksums, listing, removal and pruning."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from codeexec import SnapshotError, _snapstore as store


@pytest.fixture(autouse=True)
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CODEEXEC_SNAPSHOT_DIR", str(tmp_path / "snaps"))
    return tmp_path / "snaps"


def _make(name: str, data: bytes = b"x" * 1000, **meta: object) -> store.Snapshot:
    stage = store.staging(name)
    (stage / "workspace.tar").write_bytes(data)
    base = {"method": "portable", "session": "s", "created": time.time(), "token": "secret"}
    return store.publish(stage, name, {**base, **meta})


def test_default_root_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CODEEXEC_SNAPSHOT_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert store.snapshot_root() == tmp_path / "c" / "codeexec" / "snapshots"


def test_publish_lists_with_size_and_keeps_meta_private(root: Path) -> None:
    snap = _make("one")
    assert (snap.name, snap.size, snap.method) == ("one", 1000, "portable")
    assert stat.S_IMODE(os.stat(root / "one" / "meta.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert [s.name for s in store.list_snapshots()] == ["one"]
    assert not list(root.glob(".staging-*"))
    with pytest.raises(SnapshotError, match="exists already"):
        _make("one")


def test_damage_is_named(root: Path) -> None:
    _make("a")
    (root / "a" / "workspace.tar").write_bytes(b"y" * 1000)
    with pytest.raises(SnapshotError, match="corrupt: workspace.tar does not match"):
        store.load("a")
    (root / "a" / "workspace.tar").unlink()
    with pytest.raises(SnapshotError, match="incomplete: workspace.tar is missing"):
        store.load("a")
    meta = json.loads((root / "a" / "meta.json").read_text())
    (root / "a" / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(SnapshotError, match="another format"):
        store.load("a")
    (root / "a" / "meta.json").write_text("{not json")
    with pytest.raises(SnapshotError, match="unreadable"):
        store.load("a")
    with pytest.raises(SnapshotError, match="no snapshot named 'nope'"):
        store.load("nope")
    with pytest.raises(SnapshotError, match="invalid snapshot name"):
        store.load("../etc")


def test_remove_and_prune_by_age(root: Path) -> None:
    _make("old", created=time.time() - 7200)
    _make("new")
    assert [n for n, _ in store.prune(3600, dry_run=True)] == ["old"]
    assert [s.name for s in store.list_snapshots()] == ["new", "old"]
    assert [(n, s > 1000) for n, s in store.prune(3600)] == [("old", True)]
    assert store.remove("new") > 1000  # meta.json counts too
    assert store.list_snapshots() == []
    with pytest.raises(SnapshotError, match="no snapshot named 'new'"):
        store.remove("new")
