"""MCP tools for a session's saved states (docs/snapshots.md, Tier 1): save,
restore, list and drop checkpoints, and fork a session. Each maps its arguments onto one
ContainerSession call through the client's session access; ``build_server``
registers them after the main tools."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from ._checkpoint import Checkpoint
from ._mcp_access import access
from ._mcp_support import ToolSet

STATE_TOOLS = ToolSet()

SessionName = Annotated[
    str | None,
    Field(description="Session name. Omit it to use the current session."),
]
Tag = Annotated[str, Field(description="The checkpoint's name, as save_checkpoint returned it.")]


def _describe(c: Checkpoint) -> str:
    private = "" if c.private_bytes is None else f", {c.private_bytes / 2**20:.1f} MiB of its own"
    lost = "" if c.alive else " LOST (its process was killed, probably at the memory limit)"
    return f"{c.name} (files: {'yes' if c.files else 'no'}{private}){lost}"


@STATE_TOOLS.tool("Save a checkpoint of a session", idempotent=False)
async def save_checkpoint(
    ctx: Context,
    name: SessionName = None,
    tag: Annotated[
        str | None,
        Field(description="A name for the checkpoint (letters, digits, _.-); omit for cp1, cp2..."),
    ] = None,
    files: Annotated[
        bool, Field(description="Also save the files in /workspace (at most 100 MiB).")
    ] = False,
) -> str:
    """Save the session's Python state (every variable, import and object) so that
    restore_checkpoint can bring it back, as often as needed: before risky code, or to
    try several approaches from one state. Takes milliseconds; a session holds at most 8."""
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    saved = await sessions.call(ctx, use, lambda: use.session.checkpoint(tag, files=files))
    return (
        f"Saved checkpoint {saved.name!r} of session {use.name!r} in {saved.duration_ms:.0f} ms. "
        f"restore_checkpoint(tag={saved.name!r}) brings this state back."
    )


@STATE_TOOLS.tool("Restore a session to a checkpoint", destructive=True, idempotent=True)
async def restore_checkpoint(ctx: Context, tag: Tag, name: SessionName = None) -> str:
    """Put the session back to a checkpoint: variables, imports and objects are exactly
    as when it was saved (files too if it saved them). The checkpoint is kept."""
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    restored = await sessions.call(ctx, use, lambda: use.session.restore(tag))
    return f"Session {use.name!r} is back at checkpoint {restored.name!r}."


@STATE_TOOLS.tool("List a session's checkpoints", read_only=True)
async def list_checkpoints(ctx: Context, name: SessionName = None) -> str:
    """The session's checkpoints, oldest first, with the memory each holds on its own."""
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    listed = await sessions.call(ctx, use, use.session.checkpoints)
    if not listed:
        return f"Session {use.name!r} has no checkpoints; save_checkpoint makes one."
    return f"Checkpoints of session {use.name!r}:\n" + "\n".join(_describe(c) for c in listed)


@STATE_TOOLS.tool("Drop a checkpoint", destructive=True, idempotent=False)
async def drop_checkpoint(ctx: Context, tag: Tag, name: SessionName = None) -> str:
    """Forget a checkpoint and free the memory it holds."""
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    await sessions.call(ctx, use, lambda: use.session.drop(tag))
    return f"Dropped checkpoint {tag!r} of session {use.name!r}."


@STATE_TOOLS.tool("Fork a session", idempotent=False)
async def fork_session(
    ctx: Context,
    new_name: Annotated[str, Field(description="The new session's name.")],
    name: SessionName = None,
) -> str:
    """Start a second, independent session that begins as an exact copy of this one's
    Python state (variables, imports, objects), to try something without touching the
    original. Both keep running; pass name=<new_name> to use the copy. It lives in the
    same container: stopping the original stops its forks too."""
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    forked = await sessions.call(ctx, use, lambda: use.session.fork(new_name))
    forked.close()
    return (
        f"Started session {new_name!r} as a copy of {use.name!r}. execute_code(code, "
        f"name={new_name!r}) runs code in the copy; the original is unchanged."
    )
