"""The session address cache: private files, per engine, dropped only when stale."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from codeexec import _addrcache
from codeexec.docker import Docker, parse_ref
from codeexec.errors import DockerNotAvailable
from codeexec.models import SessionRef
from codeexec.session import ContainerSession

RECORDED = json.loads(Path(__file__).with_name("fixtures").joinpath("inspect.json").read_text())[0]
INSPECT = parse_ref(RECORDED)  # what the docker seam makes of it


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CODEEXEC_SESSION_CACHE", raising=False)
    return tmp_path


def test_round_trip_keeps_only_what_reaching_needs(cache_home: Path) -> None:
    _addrcache.remember("analysis", INSPECT)
    entry = _addrcache.recall("analysis")
    assert entry is not None and entry.id == RECORDED["Id"]
    assert entry.token == "recorded-token-not-secret"
    (binding,) = RECORDED["NetworkSettings"]["Ports"]["8888/tcp"]
    assert entry.address == (binding["HostIp"], int(binding["HostPort"]))
    assert entry.labels["codeexec.session"] == "analysis"
    assert entry == INSPECT
    (path,) = cache_home.rglob("analysis.json")
    # Of the environment only the token is kept: nothing else of the container's.
    others = [e for e in RECORDED["Config"]["Env"] if not e.startswith("CODEEXEC_TOKEN=")]
    assert others and not any(e in path.read_text() for e in others)
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
    _addrcache.forget("analysis", RECORDED["Id"])
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


# -- a cache that someone else could have written is not trusted ------------------------

FOREIGN_UID = 4242  # we run as root in CI: chown makes a file another user's


def _planted(port: int) -> SessionRef:
    """An entry steering `analysis` to ``port`` with a token the planter knows."""
    return replace(INSPECT, address=("127.0.0.1", port), token="planted-token")


def _entry_path(cache_home: Path) -> Path:
    (path,) = cache_home.rglob("analysis.json")
    return path


def test_attach_ignores_an_entry_owned_by_another_user(cache_home: Path) -> None:
    """A planted entry must not make attach talk to the planter's listener."""
    received: list[bytes] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(1)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(3)
                received.append(conn.recv(4096) or b"(connected)")

        spy = threading.Thread(target=serve, daemon=True)
        spy.start()
        _addrcache.remember("analysis", _planted(listener.getsockname()[1]))
        os.chown(_entry_path(cache_home), FOREIGN_UID, FOREIGN_UID)
        # No docker CLI: the label lookup (the only other way) fails loudly.
        with pytest.raises(DockerNotAvailable):
            ContainerSession.attach("analysis", docker=Docker(binary="/nonexistent/docker"))
        spy.join(5)
    assert received == []  # nobody connected to it: no token, no code went there


@pytest.mark.parametrize("level", [0, 1, 2])  # codeexec/, codeexec/sessions/, the engine's
def test_a_directory_others_may_write_or_own_is_ignored(cache_home: Path, level: int) -> None:
    _addrcache.remember("analysis", INSPECT)
    directory = [*_entry_path(cache_home).parents][2 - level]
    directory.chmod(0o775)
    assert _addrcache.recall("analysis") is None
    directory.chmod(0o700)
    assert _addrcache.recall("analysis") is not None
    os.chown(directory, FOREIGN_UID, FOREIGN_UID)
    assert _addrcache.recall("analysis") is None
    _addrcache.remember("other", INSPECT)  # nothing is written there either
    assert not any(cache_home.rglob("other.json"))


def test_entry_others_may_write_or_that_is_a_link_is_ignored(cache_home: Path) -> None:
    _addrcache.remember("analysis", INSPECT)
    path = _entry_path(cache_home)
    path.chmod(0o622)
    assert _addrcache.recall("analysis") is None
    path.chmod(0o600)
    elsewhere = cache_home / "elsewhere.json"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    assert _addrcache.recall("analysis") is None


def test_session_lock_serialises_one_name(cache_home: Path) -> None:
    order: list[str] = []
    with _addrcache.session_lock("analysis"):
        other = threading.Thread(target=lambda: _locked(order, "second", order.append))
        other.start()
        deadline = time.monotonic() + 10
        while not order and time.monotonic() < deadline:
            time.sleep(0.01)
        assert other.is_alive()  # it waits for the lock, and said so
        order.append("first")
    other.join(5)
    assert order == [
        "waiting for another start of session 'analysis' to finish",
        "first",
        "second",
    ]
    with _addrcache.session_lock("other-name"), _addrcache.session_lock("analysis"):
        pass  # different names do not wait for each other


def _locked(order: list[str], label: str, on_wait: Callable[[str], None]) -> None:
    with _addrcache.session_lock("analysis", on_wait):
        order.append(label)
