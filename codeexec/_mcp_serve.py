"""What ``mcp_server.serve()`` does: build the registries, run a transport, clean up.

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
from collections.abc import Sequence
from types import FrameType

from . import __version__
from ._mcp_access import Hub
from ._mcp_scope import Reach, default_scope
from .mcp_server import build_server
from .mcp_sessions import DEFAULT_SESSION_ENV, SessionRegistry
from .models import Limits

log = logging.getLogger("codeexec.mcp")


def run(
    *,
    persist: bool,
    idle_timeout: float | None,
    pool_size: int,
    build_wait: float,
    max_timeout: float,
    scope: str | None,
    share: Sequence[str],
    share_all: bool,
    max_sessions: int,
    network: str,
    memory: str,
    cpus: float,
    base_image: str | None,
    http: str | None,
) -> None:
    """``mcp_server.serve()``'s work; its docstring says what each argument does."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO, format="codeexec-mcp %(levelname)s %(message)s"
        )
    base_scope = scope or default_scope(persist=persist)

    def registry_for(client: int | None) -> SessionRegistry:
        """The registry of the stdio client, or of an HTTP client's MCP session."""
        own, default = base_scope, os.environ.get(DEFAULT_SESSION_ENV)
        if client is not None:
            own = f"{base_scope[: 39 - len(str(client))]}-{client}"
            default = f"{default}-{client}" if default else None
        return SessionRegistry(
            idle_timeout=idle_timeout,
            persist=persist,
            pool_size=pool_size,
            reach=Reach.of(own, share, share_all),
            max_sessions=max_sessions,
            network=network,
            limits=Limits(memory=memory, cpus=cpus),
            base_image=base_image,
            default_name=default,
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
