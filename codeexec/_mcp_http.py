"""`codeexec mcp --http HOST:PORT`: the MCP tools over streamable HTTP.

Anyone who can reach the port could run code in containers, so every request
passes ``Guard`` before the SDK sees it:

- the ``Host`` header must name this server (a DNS-rebinding page names its own
  domain; on a wildcard address, 0.0.0.0 or ::, any name passes) and an ``Origin``
  header, if any, must be this server's own origin (a page elsewhere sends its own);
- ``Authorization: Bearer <token>`` must carry the server's token (generated and
  printed once at start, or given in ``$CODEEXEC_MCP_TOKEN``);
- each MCP session (``Mcp-Session-Id``, from the client's ``initialize``) gets its
  own registry (``_mcp_access.Hub``): its own scope, current session and quota.
  The 2026-07-28 protocol has no MCP sessions, so its requests are refused with
  a JSON-RPC error, on which SDK clients fall back to the ``initialize`` handshake.

It listens on 127.0.0.1 unless told otherwise; a wider address still needs the
token, which then crosses the network in clear text: put TLS in front of it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import sys
from typing import Any

import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._mcp_access import Hub
from .errors import CodeexecError

log = logging.getLogger("codeexec.mcp")

TOKEN_ENV = "CODEEXEC_MCP_TOKEN"
MAX_CLIENTS = 16  # MCP sessions at once; each may run --max-sessions sessions
PATH = "/mcp"


def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (on 127.0.0.1)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CodeexecError(
            f"invalid --http address {value!r}: use HOST:PORT, such as 127.0.0.1:8765"
        )
    return host, int(port)


WILDCARD = ("0.0.0.0", "::")


def allowed_hosts(host: str, port: int) -> list[str] | None:
    """The ``Host`` header values a request may carry; None (any) for a wildcard bind,
    whose names the server cannot know (the token and the Origin check still apply)."""
    if host in WILDCARD:
        return None
    names = {host}
    if host in ("127.0.0.1", "::1", "localhost"):
        names |= {"127.0.0.1", "localhost", "::1"}
    return sorted(f"[{n}]:{port}" if _is_v6(n) else f"{n}:{port}" for n in names)


def _is_v6(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).version == 6
    except ValueError:
        return False


class Guard:
    """ASGI middleware: Host, Origin and token checks; ends a registry with its MCP session."""

    def __init__(self, app: ASGIApp, *, token: str, hosts: list[str] | None, hub: Hub) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.hosts = None if hosts is None else set(hosts)
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.refusal(headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        version = headers.get("mcp-protocol-version")
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            await _Sessionless(version)(scope, receive, send)
            return
        await self.app(scope, receive, send)
        session_id = headers.get("mcp-session-id")
        if scope["method"] == "DELETE" and session_id:
            await anyio.to_thread.run_sync(lambda: self.hub.drop(session_id))

    def refusal(self, headers: Headers) -> Response | None:
        """Why a request may not pass (a response to send), or None."""
        host = headers.get("host", "")
        if self.hosts is not None and host not in self.hosts:
            return PlainTextResponse("Host not allowed (DNS rebinding?)", status_code=421)
        origin = headers.get("origin")  # a browser's; a page may only come from here
        names = self.hosts if self.hosts is not None else {host}
        if origin is not None and origin not in {f"http://{n}" for n in names}:
            return PlainTextResponse("Origin not allowed", status_code=403)
        given = headers.get("authorization", "").encode()
        if not secrets.compare_digest(given, self.expected):
            return PlainTextResponse(
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                f"(printed when the server started, or ${TOKEN_ENV})",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="codeexec"'},
            )
        return None


class _Sessionless:
    """The JSON-RPC error for a request of a protocol without MCP sessions."""

    def __init__(self, version: str) -> None:
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while len(body) < 65536:  # enough for the id; the rest is not read
            message: Message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request_id: Any = json.loads(body).get("id")
        except (ValueError, AttributeError):
            request_id = None
        error = {
            "code": -32600,
            "message": f"protocol {self.version} has no MCP sessions, which this server keeps "
            f"state in: connect with the initialize handshake ({HANDSHAKE_PROTOCOL_VERSIONS[-1]})",
        }
        response = JSONResponse(
            {"jsonrpc": "2.0", "id": request_id, "error": error}, status_code=400
        )
        await response(scope, receive, send)


def serve_http(server: MCPServer, hub: Hub, address: str) -> None:
    """Serve ``server`` on ``address`` until SIGINT/SIGTERM; print the token once."""
    host, port = parse_address(address)
    token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    hosts = allowed_hosts(host, port)
    app = server.streamable_http_app(
        streamable_http_path=PATH,
        max_sessions=MAX_CLIENTS,
        host=host,
        # The SDK's own check, the same (Guard runs first); off where Guard allows any host.
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=hosts is not None,
            allowed_hosts=hosts or [],
            allowed_origins=[f"http://{h}" for h in hosts or []],
        ),
    )
    guarded = Guard(app, token=token, hosts=hosts, hub=hub)
    url = f"http://{'[' + host + ']' if _is_v6(host) else host}:{port}{PATH}"
    if os.environ.get(TOKEN_ENV):
        print(f"codeexec MCP server on {url} (token from ${TOKEN_ENV})", file=sys.stderr)
    else:
        print(
            f"codeexec MCP server on {url}\ntoken: {token}\n(clients send the header "
            f"'Authorization: Bearer {token}'; it is not shown again)",
            file=sys.stderr,
            flush=True,
        )
    import uvicorn

    uvicorn.run(guarded, host=host, port=port, log_level="warning", lifespan="on")
