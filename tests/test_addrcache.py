"""The session address cache: private files, per engine, dropped only when stale."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from codeexec import _addrcache

INSPECT = json.loads(Path(__file__).with_name("fixtures").joinpath("inspect.json").read_text())[0]


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CODEEXEC_SESSION_CACHE", raising=False)
    return tmp_path


def test_round_trip_keeps_only_what_reaching_needs(cache_home: Path) -> None:
    _addrcache.remember("analysis", INSPECT)
    entry = _addrcache.recall("analysis")
    assert entry is not None and entry["Id"] == INSPECT["Id"]
    assert entry["Config"]["Env"] == ["CODEEXEC_TOKEN=recorded-token-not-secret"]
    assert entry["NetworkSettings"]["Ports"] == INSPECT["NetworkSettings"]["Ports"]
    assert entry["Config"]["Labels"]["codeexec.session"] == "analysis"
    (path,) = cache_home.rglob("analysis.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_each_engine_has_its_own_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    _addrcache.remember("analysis", INSPECT)
    monkeypatch.setenv("DOCKER_HOST", "tcp://other-engine:2376")
    assert _addrcache.recall("analysis") is None


def test_forget_only_the_named_container() -> None:
    _addrcache.remember("analysis", INSPECT)
    _addrcache.forget("analysis", "some-other-container")
    assert _addrcache.recall("analysis") is not None
    _addrcache.forget("analysis", INSPECT["Id"])
    assert _addrcache.recall("analysis") is None


def test_can_be_turned_off_and_survives_garbage(
    cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _addrcache.remember("analysis", INSPECT)
    (path,) = cache_home.rglob("analysis.json")
    path.write_text("{not json")
    assert _addrcache.recall("analysis") is None
    monkeypatch.setenv("CODEEXEC_SESSION_CACHE", "0")
    _addrcache.remember("other", INSPECT)
    assert _addrcache.recall("other") is None
