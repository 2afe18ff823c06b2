"""Warm pool: session identity of claimed containers (pure), and a claim end to end."""

from __future__ import annotations

import pytest

from codeexec import ContainerSession, list_sessions
from codeexec.docker import (
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_SCOPE,
    LABEL_SESSION,
    parse_inspect,
    pool_session_name,
)
from codeexec.pool import WarmPool, close_shared_pools


@pytest.mark.parametrize(
    ("container_name", "session"),
    [
        ("codeexec-a-0123ab", "a"),
        ("/codeexec-My.Session_2-ffffff", "My.Session_2"),
        ("codeexec-with-dashes-inside-abcdef", "with-dashes-inside"),
        ("codeexec_pool_0123456789ab", ""),  # unclaimed
        ("codeexec-x-0123", ""),  # not a claim suffix
        ("other-a-0123ab", ""),
    ],
)
def test_pool_session_name(container_name: str, session: str) -> None:
    assert pool_session_name(container_name) == session


def _inspect(name: str, labels: dict[str, str]) -> dict[str, object]:
    return {
        "Id": "c" * 64,
        "Name": "/" + name,
        "Config": {"Labels": labels, "Image": "img"},
        "State": {"Status": "running", "Running": True},
    }


def test_claimed_pool_container_is_a_session() -> None:
    labels = {LABEL_MANAGED: "1", LABEL_POOL: "1"}
    assert parse_inspect(_inspect("codeexec-work-0a0b0c", labels)).name == "work"
    assert parse_inspect(_inspect("codeexec_pool_0a0b0c0d0e0f", labels)).name == ""


def test_session_label_wins_and_plain_names_are_not_parsed() -> None:
    labels = {LABEL_MANAGED: "1", LABEL_SESSION: "Real"}
    assert parse_inspect(_inspect("codeexec-real-0a0b0c", labels)).name == "Real"
    # Without the pool label the container name is never read as a session name.
    assert parse_inspect(_inspect("codeexec-x-0a0b0c", {LABEL_MANAGED: "1"})).name == ""


@pytest.mark.docker
@pytest.mark.slow
def test_claim_from_warm_pool(docker_engine: None, session_name: str) -> None:
    with WarmPool(size=1, idle_timeout=120) as pool:
        assert pool.wait_ready(timeout=60)
        unclaimed = [s for s in list_sessions() if s.name == session_name]
        assert unclaimed == []
        session = ContainerSession.start(session_name, pool=pool)
        try:
            assert session.created and session.info.labels[LABEL_POOL] == "1"  # claimed
            assert session.execute("x = 41\nx + 1").value == "42"
            names = [s.name for s in list_sessions()]
            assert session_name in names
            again = ContainerSession.attach(session_name)
            assert again.container_id == session.container_id
            assert again.execute("x").value == "41"
            again.close()
        finally:
            session.stop()
    assert session_name not in [s.name for s in list_sessions()]


@pytest.mark.docker
@pytest.mark.slow
def test_a_pool_start_of_a_running_name_attaches_and_gives_back_the_claim(
    docker_engine: None, session_name: str
) -> None:
    # The claim overlaps the lookup of the name: when the name runs already, the
    # running session is the answer and the container claimed meanwhile goes.
    with WarmPool(size=1, idle_timeout=120) as pool:
        first = ContainerSession.start(session_name, pool=pool)
        try:
            assert first.created
            first.execute("x = 7")
            assert pool.wait_ready(timeout=60)
            again = ContainerSession.start(session_name, pool=pool)
            assert not again.created and again.container_id == first.container_id
            assert again.execute("x").value == "7"
            again.close()
            mine = [s for s in list_sessions() if s.name == session_name]
            assert [s.container_id for s in mine] == [first.container_id]
            assert pool.wait_ready(timeout=60)  # the pool refilled
        finally:
            first.stop()
    assert session_name not in [s.name for s in list_sessions()]


@pytest.mark.docker
def test_warm_pool_containers_carry_the_scope(docker_engine: None, session_name: str) -> None:
    # Labels cannot change on a running container: a scoped session claims from a
    # pool whose containers were started with its scope label.
    session = ContainerSession.start(session_name, pool=1, scope="tpool-scope", idle_timeout=120)
    try:
        assert session.info.labels[LABEL_SCOPE] == "tpool-scope"
        assert session._docker.inspect(session.container_id).labels[LABEL_SCOPE] == "tpool-scope"
    finally:
        session.stop()
        close_shared_pools()


def _imports(module: str) -> set[str]:
    import ast
    from pathlib import Path

    source = Path(__file__).parent.parent / "codeexec" / f"{module}.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            found.update(f"{node.module or ''}.{a.name}".strip(".") for a in node.names)
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("module", ["pool", "_launcher"])
def test_the_pool_does_not_import_the_session(module: str) -> None:
    # The pool hands out Launched containers; ContainerSession turns one into a
    # session, so pool -> session would be a circle (session -> _start -> pool).
    assert not {i for i in _imports(module) if i == "session" or i.startswith("session.")}
    assert "ContainerSession" not in " ".join(_imports(module))


def test_the_refill_starts_after_the_claims_rename_not_beside_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The refill's `docker run` would compete with the claim's rename for the engine
    # (a claim took 20-37 ms beside it, docs/performance.md): it waits for the claim.
    import threading
    import time
    from types import SimpleNamespace

    from codeexec import pool as pool_module

    events: list[str] = []
    fake_docker = SimpleNamespace(rm=lambda *ids: None, engine="fake")
    warm = SimpleNamespace(channel=SimpleNamespace(close=lambda: None), ref=SimpleNamespace(id="c"))

    def launch(*args: object, **kwargs: object) -> object:
        events.append("launch")
        return warm

    def claim(docker: object, container: object, name: str, transport: str) -> object:
        events.append("rename")
        time.sleep(0.5)  # a window in which a refill notified too early would launch
        events.append("renamed")
        return container

    monkeypatch.setattr(pool_module._launcher, "claim", claim)
    pool = WarmPool(size=1, docker=fake_docker)  # type: ignore[arg-type]
    pool.image = "img"  # no image lookup
    monkeypatch.setattr(pool, "launch", launch)
    with pool:
        assert pool.wait_ready(timeout=10)
        deadline = time.monotonic() + 10  # until the filler is back waiting for a claim
        while not pool._cond._waiters and time.monotonic() < deadline:  # type: ignore[attr-defined]
            threading.Event().wait(0.01)
        assert pool.claim("x") is warm
        deadline = time.monotonic() + 10
        while events.count("launch") < 2 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
    assert events == ["launch", "rename", "renamed", "launch"]
