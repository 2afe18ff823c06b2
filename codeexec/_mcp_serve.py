"""``serve()`` (``codeexec mcp``): build the registries, run a transport, clean up.

Over stdio one registry serves the one client; it is closed (its containers
removed) when stdin closes or on SIGTERM. Over HTTP (``_mcp_http.py``) a ``Hub``
makes one registry per MCP session, each with a scope of its own
(``<scope>-<n>``), and closes them all on exit.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import FrameType

from mcp.server import MCPServer

from . import __version__
from ._bounds import MCP_LIMITS
from ._mcp_access import Hub
from ._mcp_support import MAX_TIMEOUT
from .options import DEFAULT_MAX_LIFETIME, SessionOptions
from .registry import SessionRegistry
from .scope import DEFAULT_MAX_SESSIONS, Reach, default_scope

log = logging.getLogger("codeexec.mcp")

DEFAULT_SESSION_ENV = "CODEEXEC_MCP_DEFAULT_SESSION"


def serve(
    build_server: Callable[..., MCPServer],
    *,
    persist: bool = False,
    idle_timeout: float | None = 3600,
    pool_size: int = 0,
    build_wait: float = 40.0,
    max_timeout: float = MAX_TIMEOUT,
    scope: str | None = None,
    share: Sequence[str] = (),
    share_all: bool = False,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    network: str = "bridge",
    memory: str = "1g",
    cpus: float = 1.0,
    base_image: str | None = None,
    runtime: str | None = None,
    display_limit: int = MCP_LIMITS.displays,
    max_lifetime: float | None = DEFAULT_MAX_LIFETIME,
    http: str | None = None,
) -> None:
    """Run the codeexec MCP server on stdin/stdout until the client disconnects.

    ``build_server`` makes the ``MCPServer`` (``mcp_server.build_server``; passed in,
    so the tools module and this one do not import each other).

    With ``http`` (``HOST:PORT``) it serves streamable HTTP instead
    (``_mcp_http.py``), each MCP session with its own registry.

    Containers started here are removed when the client disconnects (stdin closes)
    or on SIGTERM, unless ``persist``; ``idle_timeout`` (seconds, None: never) is
    the backstop that removes sessions a killed server leaves behind. The server
    reaches only its own scope's sessions and the shared ones (``scope.py``).

    Args:
        persist: leave this server's sessions running when it exits.
        idle_timeout: seconds of inactivity after which a session removes itself.
        pool_size: warm containers kept per dependency set (``codeexec.pool``); 0: none.
        build_wait: seconds a call waits for an image build before answering.
        max_timeout: the largest ``timeout`` ``execute_code`` accepts.
        scope: the ``codeexec.scope`` label of the sessions it starts and reaches
            (default: ``scope.default_scope``, stable across ``persist`` restarts).
        share: names of other sessions (e.g. started from the CLI) it may use too.
        share_all: it may use every session on the engine (the pre-scope behaviour).
        max_sessions: how many sessions of its scope may run at once.
        network, memory, cpus, base_image, max_lifetime: what its new sessions get.
        runtime: the engine runtime of its new sessions (``runsc``: gVisor).
        display_limit: bytes of rich output (images) one call returns; output, value
            and traceback are kept to 100,000 characters each (``_bounds.MCP_LIMITS``).
        http: serve streamable HTTP on this address instead of stdio.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO, format="codeexec-mcp %(levelname)s %(message)s"
        )
    # What the person set is checked before any client connects: a bad option is a
    # usage error at launch, not a tool error at the model's first start.
    options = SessionOptions.of(
        network=network,
        memory=memory,
        cpus=cpus,
        base_image=base_image,
        runtime=runtime,
        idle_timeout=idle_timeout,
        max_lifetime=max_lifetime,
        result_limits=replace(MCP_LIMITS, displays=display_limit),
    )
    base_scope = scope or default_scope(persist=persist)

    def registry_for(client: int | None) -> SessionRegistry:
        """The registry of the stdio client, or of an HTTP client's MCP session."""
        own, default = base_scope, os.environ.get(DEFAULT_SESSION_ENV)
        if client is not None:
            own = f"{base_scope[: 39 - len(str(client))]}-{client}"
            default = f"{default}-{client}" if default else None
        return SessionRegistry(
            persist=persist,
            pool_size=pool_size,
            reach=Reach.of(own, share, share_all),
            max_sessions=max_sessions,
            default_name=default,
            options=options,
        )

    if http is not None:
        from ._mcp_http import serve_http

        hub = Hub(registry_for, build_wait)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # uvicorn shuts down gracefully, restores this handler and raises the signal again.
            log.info("signal %d: removing the sessions of every MCP session", signum)
            hub.close()
            os._exit(0)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log.info("codeexec %s MCP server, scope %s-N per MCP session", __version__, base_scope)
        try:
            serve_http(build_server(hub=hub, max_timeout=max_timeout), hub, http)
        finally:
            hub.close()
        return
    registry = registry_for(None)
    server = build_server(registry, build_wait=build_wait, max_timeout=max_timeout)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # The stdio client signals the whole process group a few seconds after it
        # closes stdin: remove the containers now (again, if a removal was cut short).
        log.info("signal %d: removing this server's sessions", signum)
        registry.close(again=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    log.info(
        "codeexec %s MCP server on stdio (scope=%s, persist=%s, idle_timeout=%s)",
        __version__,
        registry.reach.scope,
        persist,
        idle_timeout,
    )
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        log.info("client disconnected")
        registry.close()
