"""MCP tools for whole-session snapshots: save, resume, list and remove.

The model reaches only the snapshots of its own scope (those taken from sessions
this server's scope started), so it can neither resume nor delete a person's
other snapshots. The work is ``ContainerSession.snapshot`` / ``resume`` and the
snapshot store (``codeexec.snapshot``); docs/snapshots.md explains the methods.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from . import snapshot as snapshots
from ._mcp_access import access
from ._mcp_support import ToolSet
from .session import ContainerSession
from .snapshot import Snapshot

SNAPSHOT_TOOLS = ToolSet()
SnapName = Annotated[str, Field(description="The snapshot's name (list_snapshots shows them).")]


def _own(ctx: Context, name: str) -> Snapshot:
    scope = access(ctx).registry.reach.scope
    for snap in snapshots.list_snapshots():
        if snap.name == name and snap.scope == scope:
            return snap
    raise ToolError(f"no snapshot named {name!r} of this server's sessions: list_snapshots")


@SNAPSHOT_TOOLS.tool("Save a whole session", structured=True)
async def snapshot_session(
    ctx: Context,
    snapshot: Annotated[
        str | None, Field(description="A name for the snapshot; omit it for one made up.")
    ] = None,
    name: Annotated[
        str | None, Field(description="Session name; omit it for the current session.")
    ] = None,
) -> dict[str, Any]:
    """Save the whole session (variables, imports, files; with the checkpoint method
    also threads and processes) so it can be resumed later with resume_snapshot, as
    many copies as wanted. Returns the snapshot, its method and what was not saved."""
    use = await access(ctx).use(ctx, name)
    snap = await anyio.to_thread.run_sync(lambda: use.session.snapshot(snapshot))
    return snap.to_dict()


@SNAPSHOT_TOOLS.tool("Resume a saved session", structured=True, open_world=True)
async def resume_snapshot(
    ctx: Context,
    snapshot: SnapName,
    name: Annotated[str, Field(description="The new session's name (must not run already).")],
) -> dict[str, Any]:
    """Start a new session from a snapshot: its variables and files as they were saved.
    Then run code in it with execute_code(name=...)."""
    snap = _own(ctx, snapshot)
    live = await anyio.to_thread.run_sync(lambda: ContainerSession.resume(snap, name))
    live.close()
    return {"session": live.name, "snapshot": snap.name, "method": snap.method,
            "not_restored": dict(live.resume_failures)}  # fmt: skip


@SNAPSHOT_TOOLS.tool("List saved sessions", structured=True, read_only=True)
async def list_snapshots(ctx: Context) -> dict[str, Any]:
    """The snapshots of this server's sessions: name, method, size and age."""
    scope = access(ctx).registry.reach.scope
    found = await anyio.to_thread.run_sync(snapshots.list_snapshots)
    return {"snapshots": [s.to_dict() for s in found if s.scope == scope]}


@SNAPSHOT_TOOLS.tool("Remove a saved session", structured=True, destructive=True, idempotent=True)
async def remove_snapshot(ctx: Context, snapshot: SnapName) -> dict[str, Any]:
    """Delete a snapshot and free its disk space."""
    snap = _own(ctx, snapshot)
    freed = await anyio.to_thread.run_sync(lambda: snapshots.remove(snap.name))
    return {"removed": snap.name, "bytes_freed": freed}
