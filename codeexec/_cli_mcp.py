"""`codeexec mcp`: the options a person sets for the model's MCP server.

Kept apart from ``cli.py`` (which registers it) because its options are many:
how long sessions live, what the model may reach (``scope.py``) and the
defaults of the sessions it starts.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ._bounds import MCP_LIMITS
from ._cli_options import (
    BaseImageOpt,
    CpusOpt,
    IdleTimeoutOpt,
    MaxLifetimeOpt,
    MemoryOpt,
    NetworkOpt,
)
from .errors import CodeexecError
from .scope import DEFAULT_MAX_SESSIONS, validate_scope
from .session import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIFETIME, validate_name


def _scope(value: str | None) -> str | None:
    try:
        return None if value is None else validate_scope(value)
    except CodeexecError as exc:
        raise typer.BadParameter(exc.message) from None


def _names(values: list[str] | None) -> list[str]:
    try:
        return [validate_name(v) for v in values or []]
    except CodeexecError as exc:
        raise typer.BadParameter(exc.message) from None


_SCOPE = (
    "Label of the sessions this server starts and reaches [default: new per run; with "
    "--persist, derived from the user and working directory]."
)
_SHARE = "Let the model use this session of yours too (repeatable)."
_SHARE_ALL = "Let the model use every session on the engine."
_MAX = "Sessions this server may run at once."
_DISPLAYS = (
    "Bytes of plots and other rich output one call returns (as sent: base64 for "
    "images); past it they are replaced by a note."
)
_HTTP = (
    "Serve streamable HTTP on HOST:PORT (or PORT, on 127.0.0.1) instead of stdio; clients "
    "need the bearer token it prints (or $CODEEXEC_MCP_TOKEN)."
)


def _address(value: str | None) -> str | None:
    if value is None:
        return None
    from ._mcp_http import parse_address

    try:
        parse_address(value)
    except CodeexecError as exc:
        raise typer.BadParameter(exc.message) from None
    return value


def serve_mcp(
    persist: Annotated[
        bool, typer.Option("--persist", help="Keep session containers when the server exits.")
    ] = False,
    idle_timeout: IdleTimeoutOpt = DEFAULT_IDLE_TIMEOUT,
    pool_size: Annotated[
        int, typer.Option(metavar="N", help="Warm containers kept ready for fast session starts.")
    ] = 0,
    build_wait: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Seconds a tool call waits for an image build before answering."
        ),
    ] = 40.0,
    scope: Annotated[str | None, typer.Option(callback=_scope, metavar="ID", help=_SCOPE)] = None,
    share: Annotated[
        list[str] | None, typer.Option(callback=_names, metavar="NAME", help=_SHARE)
    ] = None,
    share_all: Annotated[bool, typer.Option("--share-all", help=_SHARE_ALL)] = False,
    max_sessions: Annotated[
        int, typer.Option(min=1, metavar="N", help=_MAX)
    ] = DEFAULT_MAX_SESSIONS,
    network: NetworkOpt = "bridge",
    memory: MemoryOpt = "1g",
    cpus: CpusOpt = 1.0,
    base_image: BaseImageOpt = None,
    runtime: Annotated[
        str | None,
        typer.Option(metavar="RUNTIME", help="Docker runtime of its sessions, e.g. runsc."),
    ] = None,
    display_limit: Annotated[
        int, typer.Option(metavar="BYTES", min=0, help=_DISPLAYS)
    ] = MCP_LIMITS.displays,
    max_lifetime: MaxLifetimeOpt = DEFAULT_MAX_LIFETIME,
    http: Annotated[
        str | None, typer.Option(callback=_address, metavar="HOST:PORT", help=_HTTP)
    ] = None,
) -> None:
    """Serve the MCP tools (start_code_executer, execute_code, …) over stdio or HTTP.

    The model reaches only the sessions this server started (and --share ones).
    Example: codeexec mcp --dep numpy --memory 2g  (in the MCP client's config)
    """
    from .mcp_server import serve

    serve(
        persist=persist,
        idle_timeout=idle_timeout or None,
        pool_size=pool_size,
        build_wait=build_wait,
        scope=scope,
        share=share or [],
        share_all=share_all,
        max_sessions=max_sessions,
        network=network,
        memory=memory,
        cpus=cpus,
        base_image=base_image,
        runtime=runtime,
        display_limit=display_limit,
        max_lifetime=max_lifetime or None,
        http=http,
    )
