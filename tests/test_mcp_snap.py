"""The MCP snapshot tools: the model reaches only its own scope's snapshots (no Docker)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from codeexec import _snapstore as store
from codeexec.mcp_server import build_server
from tests.test_mcp_server import FakeRegistry, _text

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRegistry]:
    monkeypatch.setenv("CODEEXEC_SNAPSHOT_DIR", str(tmp_path / "snaps"))
    reg = FakeRegistry()
    yield reg
    reg.close()


def _make(name: str, scope: str | None) -> None:
    stage = store.staging(name)
    (stage / "workspace.tar").write_bytes(b"t" * 10)
    labels = {} if scope is None else {"codeexec.scope": scope}
    meta = {"method": "portable", "session": "s", "created": time.time(), "labels": labels}
    store.publish(stage, name, meta)


async def test_the_model_sees_only_its_own_scopes_snapshots(registry: FakeRegistry) -> None:
    _make("mine", registry.reach.scope)
    _make("persons", None)
    _make("other-scope", "someone-else")
    async with Client(build_server(registry)) as client:
        listed = await client.call_tool("list_snapshots", {})
        names = [s["name"] for s in (listed.structured_content or {})["snapshots"]]
        assert names == ["mine"]
        for tool, args in (
            ("remove_snapshot", {"snapshot": "persons"}),
            ("resume_snapshot", {"snapshot": "other-scope", "name": "x"}),
        ):
            refused = await client.call_tool(tool, args)
            assert refused.is_error and "no snapshot named" in _text(refused), tool
        removed = await client.call_tool("remove_snapshot", {"snapshot": "mine"})
        assert not removed.is_error and (removed.structured_content or {})["removed"] == "mine"
    assert sorted(s.name for s in store.list_snapshots()) == ["other-scope", "persons"]
