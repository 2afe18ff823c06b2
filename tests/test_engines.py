"""Several engines (engines.py) and where an engine is (_locality.py), without an engine."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from codeexec import _addrcache, _locality, engines
from codeexec._channel import _resolve
from codeexec.docker import Docker, engine_args
from codeexec.errors import DockerNotAvailable, InvalidOption
from codeexec.models import SessionInfo, SessionRef


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CODEEXEC_SESSION_CACHE", raising=False)
    monkeypatch.delenv("CODEEXEC_ENGINE_LOCAL", raising=False)
    _locality.forget()


# -- configuration ---------------------------------------------------------------------


def test_engine_args_pick_the_engine_exactly() -> None:
    assert engine_args("", "") == []
    assert engine_args("unix:///run/x.sock", "") == ["--host", "unix:///run/x.sock"]
    assert engine_args("unix:///run/x.sock", "big") == ["--context", "big"]
    docker = Docker(binary="/bin/true", host="ssh://me@big", name="big")
    assert docker.argv(["ps"]) == ["/bin/true", "--host", "ssh://me@big", "ps"]
    assert Docker(binary="/bin/true", context="lab").argv(["ps"])[1:3] == ["--context", "lab"]


def test_engines_are_parsed_from_the_environment_or_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEEXEC_ENGINES", "a=default, b=ssh://me@big  c=unix:///run/c.sock")
    found = engines.configured()
    assert [(e.name, e.host, e.context) for e in found] == [
        ("a", "", "default"),
        ("b", "ssh://me@big", ""),
        ("c", "unix:///run/c.sock", ""),
    ]
    monkeypatch.delenv("CODEEXEC_ENGINES")
    file = tmp_path / "engines"
    file.write_text("# mine\nlocal = default\nbig = tcp://big:2376  # TLS\n")
    monkeypatch.setenv("CODEEXEC_ENGINES_FILE", str(file))
    assert [e.name for e in engines.configured()] == ["local", "big"]
    file.unlink()
    only = engines.configured()  # nothing configured: the environment's engine
    assert [(e.name, e.host, e.context) for e in only] == [("default", "", "")]


@pytest.mark.parametrize(
    ("text", "says"),
    [("big", "not name=spec"), ("=x", "not name=spec"), ("a=x,a=y", "named twice")],
)
def test_a_bad_engine_entry_is_refused_before_any_docker_call(text: str, says: str) -> None:
    with pytest.raises(InvalidOption, match=says):
        engines.parse(text)


def test_an_unknown_engine_name_lists_the_configured_ones() -> None:
    configured = engines.parse("a=default,b=ssh://x")
    with pytest.raises(InvalidOption, match="configured ones are a, b"):
        engines.named("c", configured)


# -- every engine at once, bounded -------------------------------------------------------


def test_engines_are_asked_at_once_and_a_silent_one_is_reported() -> None:
    configured = engines.parse("fast=a, slow=b, down=c")
    release = threading.Event()

    def question(engine: Docker) -> str:
        if engine.name == "slow":
            release.wait(30)  # hangs past the bound
        if engine.name == "down":
            raise DockerNotAvailable("the Docker engine does not answer")
        return engine.name

    started = time.monotonic()
    answers = engines.ask(configured, question, timeout=0.5)
    assert time.monotonic() - started < 5
    release.set()
    assert [a.value for a in answers] == ["fast", None, None]
    assert engines.unreachable(answers) == [
        "slow: did not answer within 0.5 s",
        "down: the Docker engine does not answer",
    ]


def test_one_engine_raises_its_own_error_as_before() -> None:
    def question(engine: Docker) -> str:
        raise DockerNotAvailable("down")

    with pytest.raises(DockerNotAvailable):
        engines.ask([Docker(binary="/bin/true")], question)


def test_a_new_session_goes_where_its_name_runs_pinned_or_to_the_least_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configured = engines.parse("a=x, b=y, c=z")
    loads = {"a": (3, -8), "b": (1, -2), "c": (1, -4)}  # (running sessions, -free memory)
    runs_on: dict[str, str] = {}

    monkeypatch.setattr(engines, "_load", lambda engine: loads[engine.name])
    monkeypatch.setattr(
        engines, "home", lambda name, engines_, all=False: next(
            (e for e in engines_ if runs_on.get(name) == e.name), None
        ),
    )  # fmt: skip
    assert engines.place("new", configured).name == "c"  # fewest sessions, then most memory
    assert engines.place("new", configured, pinned="a").name == "a"
    runs_on["old"] = "b"
    assert engines.place("old", configured).name == "b"  # a name is unique across engines
    with pytest.raises(InvalidOption, match="already runs on engine 'b'"):
        engines.place("old", configured, pinned="a")


# -- where an engine is --------------------------------------------------------------------


def test_a_unix_socket_served_in_this_network_namespace_is_local(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    try:
        assert _locality._peer_namespace(f"unix://{path}") == "local"
    finally:
        server.close()
    assert _locality._peer_namespace(f"unix://{path}") == "unknown"  # nobody serves it
    assert _locality._peer_namespace("ssh://me@big") == "unknown"
    assert _locality._peer_namespace("tcp://127.0.0.1:2375") == "unknown"


def test_a_decided_place_is_remembered_per_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(
        _locality, "_peer_namespace", lambda endpoint: asked.append(endpoint) or "remote"
    )
    big = Docker(binary="/bin/true", host="ssh://me@big", name="big")
    assert _locality.locality(big) == "remote"
    _locality.forget()  # a new process: the address cache's folder still knows
    assert _locality.locality(big) == "remote"
    assert asked == ["ssh://me@big"]
    other = Docker(binary="/bin/true", host="ssh://me@other", name="other")
    _locality.settle(other, "local")
    _locality.forget()
    assert _addrcache.recall_engine(_locality._key(other)) == "local"
    assert _locality.locality(other) == "local"
    monkeypatch.setenv("CODEEXEC_ENGINE_LOCAL", "0")
    assert _locality.locality(other) == "remote"


def _ref(network: str = "bridge", route: str = "") -> SessionRef:
    info = SessionInfo(
        name="s", container_id="c" * 64, container_name="codeexec-s-1", image="i",
        status="running", network=network,
    )  # fmt: skip
    return SessionRef(info=info, running=True, address=("127.0.0.1", 40000), route=route)


def test_auto_uses_the_relay_for_a_remote_engine_and_tcp_for_a_local_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = Docker(binary="/bin/true", host="ssh://me@big", name="big")
    monkeypatch.setattr(_locality, "_peer_namespace", lambda endpoint: "unknown")
    assert _resolve("auto", _ref(), big) == "auto"  # unknown: probed at the first connect
    _locality.settle(big, "remote")
    assert _resolve("auto", _ref(), big) == "exec"
    assert _resolve("tcp", _ref(), big) == "tcp"  # asked for explicitly
    _locality.settle(big, "local")
    assert _resolve("auto", _ref(), big) == "tcp"
    assert _resolve("auto", _ref(network="none"), big) == "exec"
    assert _resolve("auto", _ref(route="exec"), big) == "exec"  # remembered by the cache
    assert os.environ.get("CODEEXEC_ENGINE_LOCAL") is None


def test_an_engine_of_unknown_place_is_probed_once_through_the_relay(local_engine: Path) -> None:
    # The fake engine has no socket to look at: the first session connects through the
    # relay, then proves itself on its published address (the fake's executors run
    # on this host), so the engine is local and TCP is the route from then on.
    from codeexec import ContainerSession

    docker = Docker()
    with ContainerSession.start("probe") as session:
        assert session.execute("1 + 1").value == "2"
        assert session.transport == "tcp" and session.route == "published"
    assert _locality.locality(docker) == "local"
    relays = [c for c in _fake_calls(local_engine) if c[:2] == ["exec", "-i"]]
    assert len(relays) == 1
    with ContainerSession.start("second") as again:  # decided: no relay, no probe
        assert again.execute("2").value == "2" and again.transport == "tcp"
    assert len([c for c in _fake_calls(local_engine) if c[:2] == ["exec", "-i"]]) == 1


def _fake_calls(state: Path) -> list[list[str]]:
    import json

    log = state.parent / "calls.jsonl"
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


def test_switching_the_current_context_forgets_what_was_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text('{"currentContext": "laptop"}')
    docker = Docker(binary="/bin/true")
    _locality.settle(docker, "local")
    _locality.forget()
    monkeypatch.setattr(_locality, "_peer_namespace", lambda endpoint: "unknown")
    assert _locality.locality(docker) == "local"
    (tmp_path / "config.json").write_text('{"currentContext": "big"}')  # docker context use big
    _locality.forget()
    assert _locality.locality(docker) == "unknown"
