"""Checkpoints, rollback and fork against the real engine (docs/snapshots.md, Tier 1):
the library, the CLI and the MCP faces."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from mcp_types import TextContent

from codeexec import CheckpointError, ContainerSession, NoSuchSession
from tests.conftest import RUN_ID, unique_name
from tests.integration.test_cli_e2e import codeexec
from tests.integration.test_mcp_stdio import _server, _until_built

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def live(docker_engine: None) -> Iterator[ContainerSession]:
    with ContainerSession.start(f"m{RUN_ID}-ckpt") as s:
        yield s


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_checkpoints_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "live" in request.fixturenames:
        session = request.getfixturevalue("live")
        for c in session.checkpoints():
            session.drop(c)


def test_restore_brings_back_namespace_modules_and_objects(live: ContainerSession) -> None:
    live.execute("import json\nclass Box:\n    pass\nb = Box(); b.items = [1, 2]\nn = 1")
    saved = live.checkpoint("before")
    assert saved.name == "before" and saved.alive and saved.duration_ms > 0
    live.execute("b.items.append(3); n = 2; import decimal; del json; del Box")
    live.restore(saved)
    r = live.execute("b.items, n, 'decimal' in dir(), json.dumps(1), type(b).__name__")
    assert r.value == "([1, 2], 1, False, '1', 'Box')", r
    live.execute("n = 99")
    live.restore("before")  # twice, by name: it stays parked
    assert live.execute("n").value == "1"
    assert [c.name for c in live.checkpoints()] == ["before"]


def test_restore_at_once_after_checkpoint_with_100_mb(live: ContainerSession) -> None:
    live.execute("big = [bytes(1024) for _ in range(100_000)]; n = 0")
    for i in range(5):
        live.restore(live.checkpoint(f"quick{i}"))
        live.drop(f"quick{i}")
    assert live.execute("len(big), n; del big").value is None
    assert live.execute("n").value == "0"


def test_drop_cap_and_unknown_names(live: ContainerSession) -> None:
    first = live.checkpoint()
    assert first.name.startswith("cp")
    live.drop(first)
    assert live.checkpoints() == []
    with pytest.raises(CheckpointError) as info:
        live.restore(first)
    assert info.value.code == "no_such_checkpoint"
    for i in range(8):
        live.checkpoint(f"c{i}")
    with pytest.raises(CheckpointError) as info:
        live.checkpoint("one-too-many")
    assert info.value.code == "checkpoint_limit" and "drop one" in str(info.value)


def test_files_only_when_asked(live: ContainerSession) -> None:
    live.write_file("note.txt", b"one")
    live.checkpoint("plain")
    live.checkpoint("with-files", files=True)
    live.write_file("note.txt", b"two")
    live.restore("plain")
    assert live.read_file("note.txt") == b"two"
    live.restore("with-files")
    assert live.read_file("note.txt") == b"one"


def test_rollback_on_error_timeout_and_death(live: ContainerSession) -> None:
    live.execute("state = ['kept']")
    r = live.execute("state.append('lost'); 1/0", rollback_on_error=True)
    assert r.status == "error" and r.rolled_back and not r.restarted, r
    assert live.execute("state").value == "['kept']"
    r = live.execute(
        "state.append('lost')\nimport signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)",
        timeout=1,
        rollback_on_error=True,
    )
    assert r.status == "timeout" and r.rolled_back and not r.restarted, r
    r = live.execute("state.append('lost'); import os; os._exit(9)", rollback_on_error=True)
    assert r.rolled_back and not r.restarted, r
    assert live.execute("state").value == "['kept']"
    events = list(live.execute_stream("print('x'); state.clear(); 1/0", rollback_on_error=True))
    assert events[-1].rolled_back  # type: ignore[union-attr]
    assert live.execute("state").value == "['kept']"
    r = live.execute("state.append('ok')", rollback_on_error=True)
    assert r.ok and not r.rolled_back
    assert live.checkpoints() == []  # the rollback checkpoints are not left behind


def test_cli_checkpoint_restore_list_drop_and_exec_rollback(live: ContainerSession) -> None:
    name = live.name
    assert codeexec("exec", "-s", name, "v = 1").returncode == 0
    made = codeexec("checkpoint", name, "cli-tag")
    assert made.returncode == 0 and made.stdout == "cli-tag\n", made.stderr
    codeexec("exec", "-s", name, "v = 2")
    restored = codeexec("restore", name, "cli-tag")
    assert restored.returncode == 0, restored.stderr
    assert codeexec("exec", "-s", name, "v").stdout == "1\n"
    listed = codeexec("checkpoints", name, "--json")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["cli-tag"]
    failed = codeexec("exec", "-s", name, "--rollback", "v = 3; 1/0")
    assert failed.returncode == 1 and "rolled back" in failed.stderr
    assert codeexec("exec", "-s", name, "v").stdout == "1\n"
    missing = codeexec("restore", name, "nope")
    assert missing.returncode == 3 and "no checkpoint named 'nope'" in missing.stderr
    dropped = codeexec("checkpoints", name, "--drop", "cli-tag", "--json")
    assert dropped.returncode == 0 and json.loads(dropped.stdout) == []


def _text(result) -> str:  # type: ignore[no-untyped-def]
    block = result.content[0]
    assert isinstance(block, TextContent)
    return str(block.text)


@pytest.mark.anyio
async def test_mcp_checkpoint_tools_and_rollback() -> None:
    name = unique_name()
    async with _server(name) as client:  # its default session, removed when it exits
        await _until_built(client, {"code": "w = 'a'", "name": name})
        saved = await client.call_tool("save_checkpoint", {"name": name, "tag": "m1"})
        assert not saved.is_error and "'m1'" in _text(saved), _text(saved)
        await client.call_tool("execute_code", {"code": "w = 'b'", "name": name})
        restored = await client.call_tool("restore_checkpoint", {"tag": "m1", "name": name})
        assert not restored.is_error, _text(restored)
        r = await client.call_tool("execute_code", {"code": "w", "name": name})
        assert r.structured_content is not None and r.structured_content["value"] == "'a'"
        failed = await client.call_tool(
            "execute_code", {"code": "w = 'c'; 1/0", "name": name, "rollback_on_error": True}
        )
        assert failed.structured_content is not None
        assert failed.structured_content["rolled_back"] is True
        assert "rolled back" in _text(failed)
        listed = await client.call_tool("list_checkpoints", {"name": name})
        assert "m1" in _text(listed)
        forked = await client.call_tool("fork_session", {"new_name": f"{name}-f", "name": name})
        assert not forked.is_error, _text(forked)
        r = await client.call_tool("execute_code", {"code": "w", "name": f"{name}-f"})
        assert r.structured_content is not None and r.structured_content["value"] == "'a'"
        stopped = await client.call_tool("stop_code_executer", {"name": f"{name}-f"})
        assert not stopped.is_error, _text(stopped)
        dropped = await client.call_tool("drop_checkpoint", {"tag": "m1", "name": name})
        assert not dropped.is_error
        again = await client.call_tool("restore_checkpoint", {"tag": "m1", "name": name})
        assert again.is_error and "no checkpoint named 'm1'" in _text(again)


def test_fork_is_an_independent_session_by_name(live: ContainerSession) -> None:
    live.execute("import json\nshared = {'n': 1}")
    name = f"{live.name}-f1"
    forked = live.fork(name)
    try:
        assert forked.name == name and forked.container_id == live.container_id
        assert forked.execute("shared['n'] = 2; shared, json.dumps(0)").value == "({'n': 2}, '0')"
        assert live.execute("shared").value == "{'n': 1}"  # the source is untouched
        # Found by name from another process: the CLI.
        assert codeexec("exec", "-s", name, "shared['n']").stdout == "2\n"
        assert name in {s.name for s in ContainerSession.list_sessions()}
        again = ContainerSession.attach(name)
        assert again.execute("shared").value == "{'n': 2}"
        again.close()
        forked.checkpoint("in-fork")
        assert live.checkpoints() == []  # each has its own
    finally:
        forked.stop()
    with pytest.raises(NoSuchSession):
        ContainerSession.attach(name)
    assert live.execute("shared").value == "{'n': 1}"  # the source survives its fork's stop


def test_cli_fork_and_stop(live: ContainerSession) -> None:
    name = f"{live.name}-f2"
    assert codeexec("exec", "-s", live.name, "z = 7").returncode == 0
    made = codeexec("fork", live.name, name)
    assert made.returncode == 0 and made.stdout == f"{name}\n", made.stderr
    assert codeexec("exec", "-s", name, "z + 1").stdout == "8\n"
    taken = codeexec("fork", live.name, name)
    assert taken.returncode != 0 and "exists" in taken.stderr
    stopped = codeexec("stop", name)
    assert stopped.returncode == 0, stopped.stderr
    assert codeexec("exec", "-s", name, "z").returncode == 3
    assert codeexec("exec", "-s", live.name, "z").stdout == "7\n"


def test_stopping_the_source_ends_its_forks(docker_engine: None) -> None:
    source = ContainerSession.start(f"m{RUN_ID}-src")
    fork_name = f"m{RUN_ID}-src-f"
    try:
        source.execute("a = 1")
        source.fork(fork_name).close()
    finally:
        source.close()
        stopped = codeexec("stop", source.name)
    assert stopped.returncode == 0, stopped.stderr
    assert fork_name not in {s.name for s in ContainerSession.list_sessions()}
    with pytest.raises(NoSuchSession):
        ContainerSession.attach(fork_name)


FILL = "for i in range(0, len(data), 4096):\n    data[i] = {byte}\n"  # each page: its own copy


def test_memory_filled_across_checkpoints_survives_and_restores(docker_engine: None) -> None:
    """Each checkpoint keeps the pages the session changed after it: three copies of
    48 MiB and then a 200 MiB allocation go past a 256 MiB limit. The kernel kills
    the worker (never the supervisor, and the parked copies after the worker); the
    call rolls back, and every checkpoint still restores."""
    with ContainerSession.start(f"m{RUN_ID}-oom", memory="256m") as s:
        assert s.execute("data = bytearray(b'a') * (48 * 2**20)").ok
        s.checkpoint("a")
        for tag, byte in (("b", ord("b")), ("c", ord("c"))):
            assert s.execute(FILL.format(byte=byte)).ok
            s.checkpoint(tag)
        r = s.execute("big = bytearray(b'x') * (200 * 2**20)", rollback_on_error=True)
        assert r.status == "error" and r.rolled_back and not r.restarted, r
        assert r.error is not None and "memory" in r.error.evalue, r.error
        assert s.execute("data[4096], 'big' in dir()").value == f"({ord('c')}, False)"
        assert all(c.alive for c in s.checkpoints()), s.checkpoints()
        s.restore("a")
        assert s.execute("data[4096], data[-1]").value == f"({ord('a')}, {ord('a')})"
        s.restore("b")
        assert s.execute("data[4096]").value == str(ord("b"))
