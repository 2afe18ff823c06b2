"""Unit tests of the file verbs' pure parts: chunking, where a download lands,
`cp -r` planning, listing entries, and the names a directory download accepts
(no docker: tests/integration/test_files.py moves real files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeexec import protocol
from codeexec._cli_copy import plan_copy
from codeexec._fileclient import CHUNK, chunks_of
from codeexec._filetree import _info, _safe_parts
from codeexec._transfer import local_target
from codeexec.errors import FileTransferError, ProtocolError


def test_chunks_of() -> None:
    assert list(chunks_of(b"")) == [b""]
    assert list(chunks_of(b"abc")) == [b"abc"]
    data = bytes(range(256)) * (CHUNK // 128 + 3)
    pieces = list(chunks_of(data))
    assert [len(p) for p in pieces] == [CHUNK, CHUNK, len(data) - 2 * CHUNK]
    assert b"".join(pieces) == data


def test_chunk_frames() -> None:
    assert protocol.put_file("f1", "a", b"x", 0o644, offset=8)["offset"] == 8
    assert "offset" not in protocol.put_file("f1", "a", b"x", 0o644)
    assert protocol.get_file("f2", "a", 10, offset=4, length=2) == {
        "op": "get_file", "id": "f2", "path": "a", "max_bytes": 10, "offset": 4, "length": 2,
    }  # fmt: skip
    assert protocol.get_file("f2", "a", 10) == {
        "op": "get_file", "id": "f2", "path": "a", "max_bytes": 10,
    }  # fmt: skip
    assert protocol.list_files("l", "d", recursive=True, limit=5)["limit"] == 5
    assert protocol.remove_file("r", "d", recursive=False)["op"] == "remove_file"
    assert protocol.make_dir("m", "d") == {"op": "make_dir", "id": "m", "path": "d"}


def test_download_target(tmp_path: Path) -> None:
    assert local_target(f"{tmp_path}/results/", "r.csv") == tmp_path / "results" / "r.csv"
    assert local_target(tmp_path, "r.csv") == tmp_path / "r.csv"  # an existing directory
    assert local_target(tmp_path / "new.csv", "r.csv") == tmp_path / "new.csv"
    with pytest.raises(FileTransferError, match="not a directory"):
        local_target(f"{tmp_path}/", "..")


def test_cp_recursive_plans(tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    with pytest.raises(ValueError, match="is a directory: copy it with -r"):
        plan_copy(str(src), "s1:x")
    assert plan_copy(str(src), "s1:dest", recursive=True).remote == "dest"
    assert plan_copy(str(src), "s1:dest/", recursive=True).remote == "dest/data"
    assert plan_copy(f"{src}/", "s1:", recursive=True).remote == "data"
    down = plan_copy("s1:results", str(tmp_path / "out"), recursive=True)
    assert (down.direction, down.local, down.recursive) == (
        "download", str(tmp_path / "out"), True,
    )  # fmt: skip
    assert plan_copy("s1:results/", f"{tmp_path}/", recursive=True).local == str(
        tmp_path / "results"
    )
    assert plan_copy("s1:results", str(tmp_path), recursive=True).local == str(tmp_path / "results")


@pytest.mark.parametrize(
    ("rel", "ok"),
    [("a", True), ("a/b.txt", True), ("..", False), ("a/../b", False), ("/etc", False),
     ("a//b", False), (".", False), ("a\0b", False)],
)  # fmt: skip
def test_safe_parts(rel: str, ok: bool) -> None:
    assert (_safe_parts(rel) is not None) is ok


def test_listing_entries() -> None:
    entry = {"path": "sub/f", "kind": "file", "size": 3, "mode": 420, "mtime": 1.5}
    info = _info("d", entry)
    assert (info.name, info.path, info.kind, info.size, info.mode) == (
        "f",
        "d/sub/f",
        "file",
        3,
        420,
    )
    assert _info("d/f.txt", dict(entry, path="")).path == "d/f.txt"
    assert _info(".", dict(entry, kind="strange")).kind == "other"
    with pytest.raises(ProtocolError):
        _info("d", {"path": "x"})
