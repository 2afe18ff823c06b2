"""Which address a session's executor is reached on: its bridge address or its published port.

``docker inspect`` JSON (the recorded fixture, edited) becomes a ``SessionRef`` with
both; a ``Channel`` tries the bridge address first and falls back to the published
port, here against real executors run as local processes (no docker): the bridge
address of a session stands for an address this host reaches, does not reach, or
where something that is not the session's executor answers.
"""

from __future__ import annotations

import copy
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from codeexec import _addrcache
from codeexec._channel import Channel
from codeexec.docker import Docker, parse_ref
from codeexec.errors import ConnectionLost
from codeexec.models import SessionRef
from tests.impostor import Impostor
from tests.test_executor_contract import Executor

RECORDED = json.loads(Path(__file__).with_name("fixtures").joinpath("inspect.json").read_text())[0]


def _inspect(**network_settings: Any) -> dict[str, Any]:
    data = copy.deepcopy(RECORDED)
    data["NetworkSettings"].update(network_settings)
    return data


def test_the_bridge_address_is_parsed_once_from_docker_inspect() -> None:
    ref = parse_ref(RECORDED)
    assert ref.bridge == ("172.17.0.2", 8888)
    assert ref.address == ("127.0.0.1", 49153)
    assert ref.route == ""


def test_a_user_network_address_is_used_when_the_default_one_is_empty() -> None:
    data = _inspect(IPAddress="", Networks={"mynet": {"IPAddress": "10.9.0.7"}})
    assert parse_ref(data).bridge == ("10.9.0.7", 8888)


def test_no_bridge_address_without_a_network() -> None:
    data = _inspect(IPAddress="", Networks={"none": {"IPAddress": ""}})
    data["HostConfig"]["NetworkMode"] = "none"
    assert parse_ref(data).bridge is None
    host = _inspect()
    host["HostConfig"]["NetworkMode"] = "host"
    assert parse_ref(host).bridge is None


def test_the_cache_keeps_the_route_actually_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CODEEXEC_SESSION_CACHE", raising=False)
    ref = parse_ref(RECORDED)
    for route in ("bridge", "published"):
        _addrcache.remember("analysis", SessionRef(**{**ref.__dict__, "route": route}))
        entry = _addrcache.recall("analysis")
        assert entry is not None and entry.route == route and entry.bridge == ref.bridge


@pytest.fixture(scope="module")
def executors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Executor, Executor]]:
    """The session's executor and another one (another token: not this session's)."""
    ours = Executor(tmp_path_factory.mktemp("ours"))
    other = Executor(tmp_path_factory.mktemp("other"))
    yield ours, other
    ours.stop()
    other.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _channel(
    token: str, bridge: tuple[str, int] | None, published: tuple[str, int] | None
) -> Channel:
    ref = SessionRef(info=parse_ref(RECORDED).info, running=True, token=token,
                     address=published, bridge=bridge)  # fmt: skip
    return Channel(name="analysis", ref=ref, docker=cast(Docker, None), transport="tcp")


def test_the_bridge_address_is_used_when_it_answers(
    executors: tuple[Executor, Executor],
) -> None:
    ours, _ = executors
    channel = _channel(ours.token, ("127.0.0.1", ours.port), ("127.0.0.1", _closed_port()))
    try:
        assert channel.client().execute("x = 1").status == "ok"
        assert channel.ref.route == "bridge"
    finally:
        channel.close()


def test_bridge_address_can_be_turned_off(
    executors: tuple[Executor, Executor], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, other = executors
    monkeypatch.setenv("CODEEXEC_BRIDGE", "0")
    channel = _channel(ours.token, ("127.0.0.1", other.port), ("127.0.0.1", ours.port))
    try:
        channel.client()
        assert channel.ref.route == "published"
    finally:
        channel.close()


def test_an_impostor_on_the_bridge_address_gets_the_published_port_used(
    executors: tuple[Executor, Executor],
) -> None:
    # Something that cannot prove the session's token (a remote engine's address
    # that lands on a local container) is sent a nonce only, then never tried again.
    ours, other = executors
    channel = _channel(ours.token, ("127.0.0.1", other.port), ("127.0.0.1", ours.port))
    try:
        assert channel.client().execute("x = 2").status == "ok"
        assert channel.ref.route == "published"
        channel.close()
        channel.client()
        assert channel.ref.route == "published"
    finally:
        channel.close()


def test_a_program_on_the_bridge_address_is_sent_nothing_but_a_nonce(
    executors: tuple[Executor, Executor],
) -> None:
    ours, _ = executors
    with Impostor() as impostor:
        channel = _channel(ours.token, ("127.0.0.1", impostor.port), ("127.0.0.1", ours.port))
        try:
            assert channel.client().execute("secret = 'c0de'").status == "ok"
        finally:
            channel.close()
    assert channel.ref.route == "published"
    assert ours.token.encode() not in impostor.received
    assert b"c0de" not in impostor.received
    (frames,) = impostor.frames()
    assert [f["op"] for f in frames] == ["hello"]
    assert set(frames[0]) == {"op", "protocol", "nonce"}


def test_an_unreachable_bridge_address_costs_at_most_the_dial_timeout(
    executors: tuple[Executor, Executor],
) -> None:
    ours, _ = executors
    # TEST-NET-1 (RFC 5737): never routed, like a remote engine's bridge address.
    channel = _channel(ours.token, ("192.0.2.1", 8888), ("127.0.0.1", ours.port))
    started = time.monotonic()
    try:
        channel.client()
        assert channel.ref.route == "published"
        assert time.monotonic() - started < 3.0
    finally:
        channel.close()


def test_a_refused_bridge_address_is_tried_again(executors: tuple[Executor, Executor]) -> None:
    # Refused means the container is there and its executor not listening yet (a start).
    ours, _ = executors
    channel = _channel(ours.token, ("127.0.0.1", _closed_port()), ("127.0.0.1", _closed_port()))
    with pytest.raises(ConnectionLost):
        channel.client(time.monotonic() + 2.0, check_gone=False)
    assert channel.ref.route == ""
