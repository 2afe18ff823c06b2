"""Whole-session snapshots against the real engine (issue 13, tier 2).

The checkpoint method runs on a gVisor session (runtime ``runsc-ckpt``, which
scripts/engine_runtimes.py configures; CI runs it, so nothing here skips); the
portable method on a plain runc session.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import ContainerSession, SessionExists, SnapshotError
from codeexec.snapshot import list_snapshots, remove
from tests.conftest import unique_name

pytestmark = pytest.mark.docker
GVISOR = {"runtime": "runsc-ckpt", "network": "none"}


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "snapshots"
    monkeypatch.setenv("CODEEXEC_SNAPSHOT_DIR", str(root))
    yield root


def _state(session: ContainerSession, code: str) -> object:
    result = session.execute(code, timeout=60)
    assert result.status == "ok", result
    return result.value


def test_checkpoint_keeps_memory_threads_and_files_and_forks(session_name: str) -> None:
    sessions = []
    try:
        source = ContainerSession.start(session_name, **GVISOR)  # type: ignore[arg-type]
        sessions.append(source)
        _state(source, (
            "import threading, time\n"
            "blob = bytes(range(256)) * 4096\n"
            "ticks = [0]\n"
            "def tick():\n"
            "    while True:\n"
            "        ticks[0] += 1; time.sleep(0.01)\n"
            "threading.Thread(target=tick, daemon=True).start()\n"
            "open('notes.txt', 'w').write('kept')\n"
            "n = 41"
        ))  # fmt: skip
        snap = source.snapshot(f"{session_name}-s")
        assert snap.method == "checkpoint" and snap.size > len(b"x" * 2**20)
        assert _state(source, "n += 1; n") == "42"  # the source carries on
        copies = [ContainerSession.resume(snap, unique_name()) for _ in range(2)]
        sessions += copies
        before = [int(str(_state(c, "ticks[0]"))) for c in copies]
        for copy, seen in zip(copies, before, strict=True):
            assert _state(copy, "n, len(blob), open('notes.txt').read()") == "(41, 1048576, 'kept')"
            deadline = time.monotonic() + 30
            while int(str(_state(copy, "ticks[0]"))) <= seen:  # the thread still runs
                assert time.monotonic() < deadline
        _state(copies[0], "n = 0")
        assert _state(copies[1], "n") == "41"  # independent copies
        source.stop()  # the original container gone: the snapshot still resumes
        again = ContainerSession.resume(snap.name, unique_name())
        sessions.append(again)
        assert _state(again, "n") == "41"
        with pytest.raises(SessionExists):
            ContainerSession.resume(snap, again.name)
    finally:
        for s in sessions:
            s.stop()


def test_portable_reports_what_it_cannot_keep_and_resumes(session_name: str) -> None:
    with ContainerSession.start(session_name) as source:
        _state(source, (
            "import threading, collections\n"
            "data = {'a': [1, 2, 3], 'b': b'x' * 100000}\n"
            "counts = collections.Counter('hello')\n"
            "lock = threading.Lock()\n"
            "gen = (i for i in range(3))\n"
            "def f(): return 1\n"
            "import os; os.makedirs('d', exist_ok=True); open('d/f.txt', 'w').write('hi')"
        ))  # fmt: skip
        snap = source.snapshot(f"{session_name}-p", stop=True)
        assert snap.method == "portable"
        assert set(snap.unsaved) == {"lock", "gen", "f"}
        assert "lock" in snap.unsaved["lock"]
        assert not source.is_running()
    with ContainerSession.resume(snap) as copy:
        assert copy.name == session_name and copy.resume_failures == {}
        assert _state(copy, "data['a'], len(data['b']), counts['l'], open('d/f.txt').read()") == (
            "([1, 2, 3], 100000, 2, 'hi')"
        )
        assert _state(copy, "threading.active_count() >= 1") == "True"  # modules come back


def test_checkpoint_method_refused_where_the_engine_cannot(session_name: str) -> None:
    with ContainerSession.start(session_name) as plain:
        with pytest.raises(SnapshotError, match="runc.*cannot be checkpointed"):
            plain.snapshot(f"{session_name}-x", method="checkpoint")
    assert list_snapshots() == []


@pytest.mark.parametrize("damage", ["checksum", "image", "missing"])
def test_a_damaged_snapshot_is_refused_and_leaves_no_container(
    session_name: str, store: Path, damage: str
) -> None:
    with ContainerSession.start(session_name, **GVISOR) as source:  # type: ignore[arg-type]
        _state(source, "x = 1")
        snap = source.snapshot(f"{session_name}-d")
    image = next(Path(snap.path).rglob("checkpoint.img"))
    meta_path = Path(snap.path) / "meta.json"
    if damage == "checksum":
        with open(image, "r+b") as fh:
            fh.seek(100)
            fh.write(b"\0damaged\0")
        expected = "corrupt"
    elif damage == "image":
        meta = json.loads(meta_path.read_text())
        meta["image_id"] = "sha256:" + "0" * 64
        meta_path.write_text(json.dumps(meta))
        expected = "no longer has"
    else:
        image.unlink()
        expected = "incomplete"
    with pytest.raises(SnapshotError, match=expected):
        ContainerSession.resume(snap, unique_name())
    remove(snap.name)
    assert list_snapshots() == []
    # no_leaked_containers (conftest) checks that nothing of this run is left


def test_cli_snapshot_list_resume_and_rm(session_name: str, store: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "codeexec", *args], capture_output=True, text=True, timeout=300
        )

    with ContainerSession.start(session_name) as source:
        _state(source, "v = 'from the cli'")
        saved = cli("snapshot", session_name, f"{session_name}-c")
        assert saved.returncode == 0, saved.stderr
        assert f"{session_name}-c: portable" in saved.stdout
    listed = json.loads(cli("snapshots", "--json").stdout)
    assert [(s["name"], s["method"]) for s in listed] == [(f"{session_name}-c", "portable")]
    new = unique_name()
    resumed = cli("resume", f"{session_name}-c", "--name", new)
    assert resumed.returncode == 0, resumed.stderr
    with ContainerSession.attach(new) as copy:  # stops it on exit
        assert _state(copy, "v") == "'from the cli'"
    bad = cli("resume", "no-such-snapshot")
    assert bad.returncode != 0 and "no snapshot named 'no-such-snapshot'" in bad.stderr
    assert cli("snapshots", "rm", f"{session_name}-c").returncode == 0
    assert json.loads(cli("snapshots", "--json").stdout) == []
