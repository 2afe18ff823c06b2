"""The maintenance core both faces call, against tests/fake_docker.py (no engine)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from codeexec import _addrcache, maintenance
from codeexec._dockerargs import parse_ref
from codeexec.maintenance import ListedSession, StopReport
from codeexec.session import ContainerSession
from tests.test_cli import FAKE, calls, container, with_containers


@pytest.fixture
def docker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "docker.log"
    monkeypatch.setenv("CODEEXEC_DOCKER", FAKE)
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a fresh address cache
    monkeypatch.delenv("CODEEXEC_SESSION_CACHE", raising=False)
    for var in ("FAKE_DOCKER_FAIL", "FAKE_DOCKER_STDOUT_PS", "FAKE_DOCKER_STDOUT_CONTAINER"):
        monkeypatch.delenv(var, raising=False)
    return log


def removed(log: Path) -> list[list[str]]:
    return [c for c in calls(log) if c[0] == "rm"]


def test_stop_many_forgets_each_address_as_stop_does(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta = container("alpha"), container("beta", cid="c2")
    with_containers(monkeypatch, alpha, beta)
    _addrcache.remember("alpha", parse_ref(alpha))
    _addrcache.remember("beta", parse_ref(beta))
    assert maintenance.stop_sessions(["alpha", "gamma"]) == StopReport(("alpha",), ("gamma",))
    assert _addrcache.recall("alpha") is None  # no later process knocks at a gone address
    assert _addrcache.recall("beta") is not None  # still runs, still remembered
    assert removed(docker_log) == [["rm", "--force", "c1" * 32]]


def test_stop_many_by_scope(docker_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine, other = container("t-a"), container("t-b", cid="c2")
    mine["Config"]["Labels"]["codeexec.scope"] = "chat-1"
    other["Config"]["Labels"]["codeexec.scope"] = "chat-2"
    with_containers(monkeypatch, mine, other, container("t-c", cid="c3"))
    report = maintenance.stop_sessions(all=True, prefix="t-", scope="chat-1")
    assert report == StopReport(stopped=("t-a",))
    assert removed(docker_log) == [["rm", "--force", "c1" * 32]]
    # Named sessions outside the scope count as missing: they are not this scope's to stop.
    assert maintenance.stop_sessions(["t-b"], scope="chat-1").missing == ("t-b",)


def test_gc_forgets_the_address_of_what_it_removes(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = container("dead1", status="exited")
    with_containers(monkeypatch, dead)
    _addrcache.remember("dead1", parse_ref(dead))
    report = maintenance.gc()
    assert [c.name for c in report.containers] == ["dead1"]
    assert _addrcache.recall("dead1") is None
    assert removed(docker_log) == [["rm", "--force", "c1" * 32]]


def test_remove_containers_never_takes_a_session_name_for_a_path(
    docker_log: Path, tmp_path: Path
) -> None:
    cache = _addrcache._directory(create=True)
    assert cache is not None
    outside = cache.parent / "evil.json"
    outside.write_text(json.dumps({"Id": "c9" * 32}))
    maintenance.remove_containers({"c9" * 32: "../evil"})
    assert outside.exists()
    assert removed(docker_log) == [["rm", "--force", "c9" * 32]]


class _Probed:
    """Stands in for an attached session; answers only once ``ready`` sessions ask at once."""

    route = "published"

    def __init__(self, name: str, ready: threading.Barrier) -> None:
        self.name, self.ready = name, ready

    def idle_seconds(self) -> float:
        self.ready.wait()  # BrokenBarrierError (a test failure) if asked one by one
        return float(len(self.name))

    def close(self) -> None:
        pass


def test_ls_asks_running_sessions_at_once(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_containers(
        monkeypatch,
        container("a"),
        container("bb", cid="c2"),
        container("ccc", cid="c3"),
        container("gone", cid="c4", status="exited"),
    )
    ready = threading.Barrier(3, timeout=30)
    asked: list[str] = []

    def attach(cls: Any, name: str, **kwargs: Any) -> _Probed:
        asked.append(name)
        return _Probed(name, ready)

    monkeypatch.setattr(ContainerSession, "attach", classmethod(attach))
    listed = maintenance.list_idle()
    assert [(s.info.name, s.idle_seconds) for s in listed] == [
        ("a", 1.0), ("bb", 2.0), ("ccc", 3.0), ("gone", None)
    ]  # fmt: skip
    assert sorted(asked) == ["a", "bb", "ccc"]  # a stopped session is not asked
    assert listed[0].to_dict() == {**listed[0].info.to_dict(), "idle_seconds": 1.0}
    assert isinstance(listed[3], ListedSession)


def test_session_logs_finds_the_container(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_containers(monkeypatch, container("alpha"))
    # The session lookup lists id, name, session label and pool label, one row each.
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_PS", "c1" * 32 + "\tcodeexec-alpha-1\talpha\t\n")
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_LOGS", "executor ready\n")
    assert maintenance.session_logs("alpha", tail=None) == "executor ready\n"
    assert calls(docker_log)[-1] == ["logs", "c1" * 32]


def test_gc_reaps_gvisor_leftovers_except_in_a_dry_run(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_containers(monkeypatch)
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_INFO", json.dumps({"runsc": {"path": "/usr/bin/runsc"}}))
    assert maintenance.gc(dry_run=True).reaped == ()
    assert not [c for c in calls(docker_log) if c[0] == "run"]
    report = maintenance.gc()
    assert report.reaped == ("f" * 64,)  # what the reaper printed (the fake's `run` id)
    (reaper,) = [c for c in calls(docker_log) if c[0] == "run"]
    assert "--pid" in reaper and reaper[reaper.index("--pid") + 1] == "host"


def test_doctor_says_whether_gvisor_is_there_and_how_to_add_it(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codeexec import _doctor
    from codeexec.docker import Docker

    monkeypatch.setenv("FAKE_DOCKER_STDOUT_INFO", json.dumps({"runc": {"path": "runc"}}))
    missing = _doctor._gvisor_check(Docker())
    assert missing.ok and "not configured" in missing.detail
    assert "apt-get install runsc" in missing.fix and "kill -HUP" in missing.fix
    monkeypatch.setenv(
        "FAKE_DOCKER_STDOUT_INFO",
        json.dumps({"runc": {"path": "runc"}, "runsc": {"path": "/usr/bin/runsc"}}),
    )
    there = _doctor._gvisor_check(Docker())
    assert there.ok and there.detail == "runsc: start with --runtime runsc" and not there.fix


def test_cli_gc_names_each_gvisor_sandbox_it_reaped(
    docker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli import run

    with_containers(monkeypatch)
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_INFO", json.dumps({"runsc": {"path": "/usr/bin/runsc"}}))
    result = run("gc")
    assert result.exit_code == 0
    assert "removed the gVisor sandbox left by failed start ffffffffffff" in result.stdout
