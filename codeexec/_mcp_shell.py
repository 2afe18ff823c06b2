"""MCP tools for the session's shell and files: ``run_command`` and ``list_files``.

Each maps its arguments onto one ``ContainerSession`` call (``run``,
``files.list``) and formats the answer; registered by ``mcp_server.build_server``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field
from typing_extensions import TypedDict

from ._mcp_access import access
from ._mcp_support import MAX_TIMEOUT, ToolSet, structured

SHELL_TOOLS = ToolSet()
MAX_COMMAND_OUTPUT = 2**20  # bytes of output a command returns into the model's context
COMMAND_TIMEOUT = 60.0
MAX_LISTED = 5000  # entries a listing returns into the model's context

SessionName = Annotated[
    str | None,
    Field(description="Session name. Omit it to use the current session."),
]


class CommandOutput(TypedDict):
    """A command's result: its exit code (0 is success), output and how it ended."""

    session: str
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool
    truncated: bool


@SHELL_TOOLS.tool("Run a shell command", structured=True, destructive=True, open_world=True)
async def run_command(
    ctx: Context,
    command: Annotated[
        str | list[str],
        Field(
            description=(
                "A command line run by `sh -c` (pipes, globs and $VARS work), or a list: "
                "the program and its arguments, passed as they are with no shell."
            )
        ),
    ],
    name: SessionName = None,
    timeout: Annotated[
        float,
        Field(gt=0, le=MAX_TIMEOUT, description="Seconds before the command is stopped."),
    ] = COMMAND_TIMEOUT,
    cwd: Annotated[
        str | None, Field(description="Working directory; relative paths are under /workspace.")
    ] = None,
    env: Annotated[
        dict[str, str] | None, Field(description="Environment variables to add.")
    ] = None,
) -> Annotated[CallToolResult, CommandOutput]:
    """Run a shell command (ls, git, pip, grep, a build…) in a session's container, as
    the session's user in /workspace, and return its exit code, stdout and stderr. It
    runs beside the session's Python code and sees the same files; a non-zero exit code
    is a normal result. Use execute_code for Python."""
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    result = await sessions.call(
        ctx,
        use,
        lambda: use.session.run(
            command, timeout=timeout, cwd=cwd, env=env, output_limit=MAX_COMMAND_OUTPUT
        ),  # fmt: skip
        label="running a command",
    )
    output = CommandOutput(
        session=use.name, exit_code=result.exit_code, stdout=result.stdout,
        stderr=result.stderr, duration_ms=result.duration_ms, timed_out=result.timed_out,
        truncated=result.truncated,
    )  # fmt: skip
    how = f"timed out after {timeout:g} s" if result.timed_out else f"exit code {result.exit_code}"
    return structured(f"{how} (session {use.name!r})", dict(output))


class FileEntry(TypedDict):
    """One entry of a listing; ``path`` is what read_file takes."""

    path: str
    kind: Literal["file", "directory", "symlink", "other"]
    size: int
    mtime: float


class FilesOutput(TypedDict):
    session: str
    files: list[FileEntry]


@SHELL_TOOLS.tool("List files in a session", structured=True, read_only=True)
async def list_files(
    ctx: Context,
    path: Annotated[
        str, Field(description="A directory (or file); relative paths are under /workspace.")
    ] = ".",
    recursive: Annotated[bool, Field(description="List the whole tree.")] = False,
    name: SessionName = None,
) -> Annotated[CallToolResult, FilesOutput]:
    """List the files in a session's directory: path, kind ('file', 'directory',
    'symlink', 'other'), size in bytes and modification time. Symlinks are shown as
    themselves. Read one with read_file."""
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    listed = await sessions.call(
        ctx, use, lambda: use.session.files.list(path, recursive=recursive)
    )
    entries = [FileEntry(path=f.path, kind=f.kind, size=f.size, mtime=f.mtime) for f in listed][
        :MAX_LISTED
    ]
    lines = [f"{len(listed)} entries in {path} (session {use.name!r})"]
    lines += [f"{e['path']}{'/' if e['kind'] == 'directory' else ''}" for e in entries[:200]]
    return structured("\n".join(lines), dict(FilesOutput(session=use.name, files=entries)))
