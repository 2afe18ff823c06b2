"""The snapshot commands through CliRunner: bad input is refused before any docker call,
and the listing/removal work on the snapshot store (no engine needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from codeexec import _snapstore as store
from tests.test_cli import calls, docker_log, run  # noqa: F401 - docker_log is a fixture


@pytest.fixture(autouse=True)
def snapshot_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CODEEXEC_SNAPSHOT_DIR", str(tmp_path / "snaps"))
    return tmp_path / "snaps"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["snapshot", "s1", "--method", "fast"], "method 'fast' is not one of auto"),
        (["snapshot", "s1", "../x"], "invalid snapshot name '../x'"),
        (["resume", "nothing-here"], "no snapshot named 'nothing-here'"),
        (["snapshots", "rm", "nothing-here"], "no snapshot named 'nothing-here'"),
    ],
)
def test_bad_snapshot_input_is_one_line_before_any_docker_call(
    args: list[str],
    says: str,
    docker_log: Path,  # noqa: F811
) -> None:
    result = run(*args)
    assert result.exit_code != 0 and says in result.output, result.output
    assert "Traceback" not in result.output
    assert calls(docker_log) == []


def test_list_json_and_rm(snapshot_dir: Path, docker_log: Path) -> None:  # noqa: F811
    stage = store.staging("snap-a")
    (stage / "workspace.tar").write_bytes(b"w" * 2048)
    store.publish(stage, "snap-a", {"method": "portable", "session": "s", "created": time.time()})
    listed = json.loads(run("snapshots", "--json").output)
    assert [(s["name"], s["size"], s["method"]) for s in listed] == [("snap-a", 2048, "portable")]
    table = run("snapshots").output
    assert "snap-a" in table and "2.0 KiB" in table and "portable" in table
    assert run("snapshots", "rm", "snap-a").exit_code == 0
    assert json.loads(run("snapshots", "--json").output) == []
    assert calls(docker_log) == []


def test_rm_and_gc_prune_print_one_json_document(
    snapshot_dir: Path,
    docker_log: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.test_cli import with_containers

    for name in ("snap-a", "snap-b"):
        stage = store.staging(name)
        (stage / "workspace.tar").write_bytes(b"w" * 1024)
        store.publish(stage, name, {"method": "portable", "session": "s", "created": 1.0})
    removed = json.loads(run("snapshots", "rm", "snap-a", "--json").output)
    (gone,) = removed["removed"]
    assert gone["name"] == "snap-a" and gone["size"] >= 1024  # the files and meta.json
    with_containers(monkeypatch)
    done = run("gc", "--json", "--snapshots-older-than", "0")
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)  # exactly one document: json.loads reads all of it
    assert [s["name"] for s in document["snapshots"]] == ["snap-b"]
    assert "containers" in document and json.loads(run("snapshots", "--json").output) == []
