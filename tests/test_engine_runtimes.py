"""scripts/engine_runtimes.py: daemon.json is merged (never replaced), on a temp file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).parent.parent / "scripts" / "engine_runtimes.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("engine_runtimes", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_fresh_machine_gets_both_runtimes_and_experimental(tmp_path: Path) -> None:
    er = _script()
    path = tmp_path / "docker" / "daemon.json"
    assert er.update(str(path)) == er.RESTART
    config = json.loads(path.read_text())
    assert config["experimental"] is True
    assert config["runtimes"]["runsc-ckpt"]["runtimeArgs"] == ["--network=none"]
    assert config["runtimes"]["runsc"]["runtimeArgs"] == ["--network=host"]
    assert er.update(str(path)) == er.UNCHANGED  # configured already: a no-op


def test_every_existing_key_is_kept(tmp_path: Path) -> None:
    er = _script()
    path = tmp_path / "daemon.json"
    mine = {
        "experimental": True,
        "log-driver": "journald",
        "registry-mirrors": ["https://mirror.example"],
        "runtimes": {
            "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]},
            "kata": {"path": "/usr/bin/kata"},
        },
    }
    path.write_text(json.dumps(mine))
    assert er.update(str(path)) == er.RELOAD  # only a runtime added: SIGHUP suffices
    config = json.loads(path.read_text())
    assert {k: v for k, v in config.items() if k != "runtimes"} == {
        k: v for k, v in mine.items() if k != "runtimes"
    }
    assert config["runtimes"]["kata"] == {"path": "/usr/bin/kata"}
    assert set(config["runtimes"]) == {"runsc", "kata", "runsc-ckpt"}
    before = path.read_bytes()
    assert er.update(str(path)) == er.UNCHANGED and path.read_bytes() == before


def test_the_owners_choices_win(tmp_path: Path, capsys: object) -> None:
    er = _script()
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"experimental": False, "runtimes": {"runsc": {"path": "/x"}}}))
    er.update(str(path))
    config = json.loads(path.read_text())
    assert config["experimental"] is False and config["runtimes"]["runsc"] == {"path": "/x"}
    assert "runsc-ckpt" in config["runtimes"]
    assert [c.split(" ")[0] for c in er.conflicts(config)] == ["runtimes.runsc", "experimental"]


def test_this_machines_configuration_is_already_complete() -> None:
    er = _script()
    live = Path("/etc/docker/daemon.json")
    if live.is_file():  # on a machine set up by `make engine`, merging adds nothing
        assert er.merge(json.loads(live.read_text()))[1] == []
