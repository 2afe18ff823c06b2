"""The MCP tool server: codeexec sessions as tools for AI clients.

``serve()`` runs it over stdin/stdout (``codeexec mcp``) or streamable HTTP
(``--http``, ``_mcp_http.py``); ``build_server()`` returns the ``MCPServer`` for
in-memory tests. The tools are module-level functions, as in the MCP SDK's own
examples: each reaches the server's state (``_mcp_access.ServerState``) through its
lifespan context, maps its arguments to one call of the core (the session registry,
``registry.py``, and ``ContainerSession``, reached per MCP session through
``_mcp_access.access``) and formats the result (``_mcp_support.py``).
stdout is the MCP wire, so everything else (logs, build progress) goes to stderr.

Two kinds of failure, kept apart on purpose: an exception raised by the *user's*
code is a successful tool call whose result says ``status: error`` with the
traceback; a failure of the tool itself (unknown session, bad dependency, failed
build, Docker unreachable, code too large, a rejected argument) is a tool error
(``isError: true``) whose message says what to do next.

MCP clients cancel a call after about 60 s, so no call waits on an image build
for more than ``build_wait`` seconds: a longer build goes on in a background
thread and the next call on that session waits for it again, sending progress
notifications while it waits. Code that runs longer goes through the job tools
(``_mcp_jobs.py``), or through clients that extend their timeout on progress.
"""

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from . import __version__, images
from ._mcp_access import Hub, ServerState, access, state
from ._mcp_jobs import JOB_TOOLS
from ._mcp_serve import DEFAULT_SESSION_ENV, serve as _serve
from ._mcp_snap import SNAPSHOT_TOOLS
from ._mcp_state import STATE_TOOLS
from ._mcp_support import (
    MAX_CODE_BYTES,
    MAX_TIMEOUT,
    CodeexecMCP,
    ExecOutput,
    SessionsOutput,
    ToolSet,
    check_code_size,
    decode_content,
    encode_content,
    exec_result,
    sessions_result,
)
from .registry import SessionRegistry
from .session import validate_name

__all__ = ["DEFAULT_SESSION_ENV", "SessionRegistry", "build_server", "serve"]

log = logging.getLogger("codeexec.mcp")

MAX_READ_BYTES = 2**20  # read_file returns the content into the model's context
DEFAULT_TIMEOUT = 30.0
INSTALL_TIMEOUT = 300.0


SessionName = Annotated[
    str | None,
    Field(
        description="Session name. Omit it to use the current session: the one last started "
        "or reused here (initially the default session)."
    ),
]


TOOLS = ToolSet()
INSTRUCTIONS = (
    "Runs Python code in Docker containers whose state persists between calls: "
    "variables, imports and files stay until the session is stopped. Call "
    "start_code_executer (with the pip packages you need) then execute_code; "
    "execute_code alone starts a default session without extra packages. Code "
    "that may run longer than a minute goes through start_job, then get_job."
)


TIMEOUT_HELP = "Seconds before the code is interrupted (KeyboardInterrupt); variables are kept."
# execute_code's timeout; build_server(max_timeout=) gives a server another maximum.
Timeout = Annotated[float, Field(gt=0, le=MAX_TIMEOUT, description=TIMEOUT_HELP)]


# -- the tools -----------------------------------------------------------------------------


@TOOLS.tool("Start a Python session", idempotent=True, open_world=True)
async def start_code_executer(
    ctx: Context,
    dependencies: Annotated[
        list[str],
        Field(
            description="pip requirements to install in the session's image, such as "
            "['numpy', 'pandas==2.*']. Same list, same image: it is reused."
        ),
    ] = [],  # noqa: B006
    name: Annotated[
        str | None,
        Field(
            description="Session name (letters, digits, '.', '_', '-'); omit it for the "
            "default session. Several sessions may run at once."
        ),
    ] = None,
) -> str:
    """Start a Python session in a Docker container; its variables, imports and files
    persist across execute_code calls until stop_code_executer. Starting a session that
    already runs with the same dependencies reuses it. Building an image with new
    dependencies can take minutes: if it is not done in time this returns 'still
    building' and the build continues; then just call execute_code, which waits for it.
    Returns the session's name; execute_code runs there by default afterwards."""
    deps = images.normalize_dependencies(dependencies)
    sessions = access(ctx)
    reg = sessions.registry
    target = validate_name(name or reg.default_name)
    entry = await anyio.to_thread.run_sync(lambda: reg.start(target, deps))
    session = await sessions.wait(ctx, entry)
    if session is None:
        return (
            f"{entry.building()}. It goes on in the background: call "
            f"execute_code(code, name={target!r}) next; that call waits for the build."
        )
    return (
        f"Code execution service started with the name: {target}\n"
        f"Dependencies: {', '.join(deps) or 'none'}. Variables persist between "
        f"calls; call execute_code(code, name={target!r}) next."
    )


@TOOLS.tool("Run Python code", structured=True, destructive=True, open_world=True)
async def execute_code(
    ctx: Context,
    code: Annotated[
        str,
        Field(
            description=(
                "Python source, run like a notebook cell: the value of a final expression is "
                f"returned. At most {MAX_CODE_BYTES // 2**20} MiB."
            )
        ),
    ],
    name: SessionName = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    rollback_on_error: Annotated[
        bool, Field(description="If the code fails, times out or crashes, undo its changes.")
    ] = False,
) -> Annotated[CallToolResult, ExecOutput]:
    """Run Python code in a session and return stdout, stderr, the value of the last
    expression and any error traceback; images (matplotlib figures, _repr_png_) come
    back as image content. State persists: later calls see earlier variables. An
    exception in the code is a normal result with status 'error'. With no session yet,
    this starts the default one without extra packages (install_packages adds some)."""
    check_code_size(code)
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    result = await sessions.run(
        ctx,
        use,
        lambda on_output: use.session.execute(
            code,
            timeout=timeout,
            result_limits=sessions.registry.result_limits,
            on_output=on_output,
            rollback_on_error=rollback_on_error,
        ),
        label="running",
    )
    note = (
        (
            f"Started session {use.name!r} with no extra dependencies (this was the first "
            "call; start_code_executer(dependencies=[...]) or install_packages adds "
            "packages)."
        )
        if use.started
        else ""
    )
    return exec_result(result, name=use.name, note=note, max_timeout=state(ctx).max_timeout)


@TOOLS.tool("Install pip packages", structured=True, idempotent=True, open_world=True)
async def install_packages(
    ctx: Context,
    packages: Annotated[
        list[str], Field(description="pip requirements, such as ['requests', 'sympy>=1.12']")
    ],
    name: SessionName = None,
    timeout: Annotated[
        float, Field(gt=0, le=1800, description=("Seconds pip may take."))
    ] = INSTALL_TIMEOUT,
) -> Annotated[CallToolResult, ExecOutput]:
    """pip-install packages into a running session; they import at once, without a
    restart, and the session's variables are kept. The result is pip's output with
    status 'ok', or status 'error' if pip failed. For packages needed from the start,
    prefer start_code_executer(dependencies=[...]), which caches an image."""
    images.normalize_dependencies(packages)  # refuse bad strings before any start
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    result = await sessions.run(
        ctx,
        use,
        lambda on_output: use.session.install(packages, timeout=timeout, on_output=on_output),
        label="installing",
    )
    note = f"Started session {use.name!r} first." if use.started else ""
    return exec_result(result, name=use.name, note=note, max_timeout=state(ctx).max_timeout)


@TOOLS.tool("Stop a session", destructive=True, idempotent=True)
async def stop_code_executer(
    ctx: Context,
    name: SessionName = None,
    delete_service: Annotated[
        bool,
        Field(
            description=(
                "True: remove the container and every variable in it. False: leave it running "
                "(until its idle timeout) so reuse_code_executer(name) can pick it up again."
            )
        ),
    ] = True,
) -> str:
    """Stop a session. By default its container is removed and its state is lost; it
    cannot be undone. Call start_code_executer to start a new one."""
    reg = access(ctx).registry
    target = validate_name(name or reg.current)
    entry, _ = await anyio.to_thread.run_sync(lambda: reg.get(target, auto_start=False))
    await anyio.to_thread.run_sync(lambda: reg.forget(entry, remove=delete_service))
    if not delete_service:
        return (
            f"Code execution service {target!r} was left running with its state; "
            f"call reuse_code_executer(name={target!r}) to use it again."
        )
    if entry.session is None:
        return f"Code execution service {target!r} will be removed when its build ends."
    return f"Code execution service stopped: session {target!r} and its state are gone."


@TOOLS.tool("Reuse a running session", idempotent=True)
async def reuse_code_executer(
    ctx: Context,
    name: Annotated[
        str | None,
        Field(
            description=(
                "Name of a running session, e.g. one left running by stop_code_executer("
                "delete_service=False) or one shared with this server; omit it for the "
                "current session."
            )
        ),
    ] = None,
) -> str:
    """Reattach to a running session by name and make it the current one; its
    variables are still there. list_sessions() shows which sessions exist."""
    reg = access(ctx).registry
    target = validate_name(name or reg.current)
    entry = await anyio.to_thread.run_sync(lambda: reg.reuse(target))
    return (
        f"Code execution service {target!r} is the current session (dependencies: "
        f"{', '.join(entry.dependencies) or 'none'}); its state is kept. Call "
        "execute_code(code) next."
    )


@TOOLS.tool("List sessions", structured=True, read_only=True)
async def list_sessions(ctx: Context) -> Annotated[CallToolResult, SessionsOutput]:
    """List the sessions this server may use (the ones it started, and any shared with
    it): name, status ('running', 'exited', 'building'), dependencies, and whether this
    server manages it. 'current' is the session that tools use when no name is given."""
    reg = access(ctx).registry
    rows = await anyio.to_thread.run_sync(reg.rows)
    return sessions_result(SessionsOutput(current=reg.current, sessions=rows))


@TOOLS.tool("Write a file into a session", destructive=True, idempotent=True)
async def write_file(
    ctx: Context,
    path: Annotated[
        str,
        Field(
            description=(
                "Where to write; a relative path is under the session's working directory "
                "/workspace (also /tmp is writable)."
            )
        ),
    ],
    content: Annotated[str, Field(description="The file's content.")],
    encoding: Annotated[
        Literal["utf-8", "base64"],
        Field(description=("'utf-8' for text, 'base64' for binary content.")),
    ] = "utf-8",
    name: SessionName = None,
) -> str:
    """Write a file into a session, where code run by execute_code can open it. Files
    persist with the session; the size limit is 32 MiB."""
    data = decode_content(content, encoding)
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    written = await sessions.call(ctx, use, lambda: use.session.write_file(path, data))
    return f"Wrote {written} bytes to {path} in session {use.name!r}."


@TOOLS.tool("Read a file from a session", read_only=True)
async def read_file(
    ctx: Context,
    path: Annotated[
        str, Field(description=("The file to read; a relative path is under /workspace."))
    ],
    encoding: Annotated[
        Literal["utf-8", "base64"],
        Field(description=("'utf-8' returns text; 'base64' returns binary content encoded.")),
    ] = "utf-8",
    name: SessionName = None,
) -> str:
    """Read a file from a session (at most 1 MiB; summarise bigger files with
    execute_code instead)."""
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    data = await sessions.call(
        ctx, use, lambda: use.session.read_file(path, max_bytes=MAX_READ_BYTES)
    )
    return encode_content(data, encoding, path)


def math_evaluation(
    expression: Annotated[str, Field(description="The mathematical expression")],
) -> str:
    """Evaluate a mathematical expression with SymPy in a code session."""
    return (
        "Evaluate this mathematical expression using python code execution and "
        "SymPy library. Use SymPy for all advanced computations: start a session "
        "with start_code_executer(dependencies=['sympy']), then run the code with "
        f"execute_code.\nExpression:\n{expression}"
    )


# -- the server ----------------------------------------------------------------------------


def build_server(
    registry: SessionRegistry | None = None,
    *,
    build_wait: float = 40.0,
    max_timeout: float = MAX_TIMEOUT,
    hub: Hub | None = None,
) -> MCPServer:
    """The codeexec MCP server with its tools and prompt; run it with ``serve()``.

    Args:
        registry: the sessions it manages (default: a new ``SessionRegistry``).
        hub: instead of ``registry``, one registry per MCP session (HTTP).
        build_wait: seconds a call waits for an image build before answering that
            it continues in the background.
        max_timeout: the largest ``timeout`` ``execute_code`` accepts.
    """
    if hub is None:
        registry = registry or SessionRegistry(default_name=os.environ.get(DEFAULT_SESSION_ENV))
        hub = Hub.single(registry, build_wait)
    server_state = ServerState(hub, max_timeout)

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[ServerState]:
        yield server_state  # the registries outlive a connection: serve() closes them

    mcp: MCPServer = CodeexecMCP(
        "codeexec", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan
    )
    TOOLS.add_to(mcp, maxima={"execute_code": {"timeout": max_timeout}})
    JOB_TOOLS.add_to(mcp)
    SNAPSHOT_TOOLS.add_to(mcp)
    STATE_TOOLS.add_to(mcp)
    mcp.prompt(title="Mathematics Solver")(math_evaluation)
    return mcp


def serve(**options: Any) -> None:
    """Run the codeexec MCP server: over stdio until the client disconnects, or over
    streamable HTTP with ``http="HOST:PORT"``. The options are ``_mcp_serve.serve``'s
    (persist, idle_timeout, pool_size, build_wait, scope, share, network, ...)."""
    _serve(build_server, **options)


if __name__ == "__main__":
    serve()
