"""docs/mcp.md's client configurations work: each snippet is parsed as its client reads
it, and the command it names is started and asked for its tools (no Docker needed)."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.test_mcp_server import TOOLS

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parent.parent / "docs" / "mcp.md"
CLIENTS = ("Claude Desktop", "Claude Code", "VS Code", "Cursor")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _snippets() -> list[tuple[str, str, str]]:
    """(client, language, text) of each code block under the four client headings."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Configure your client", 1)[1].split("\n## ", 1)[0]
    out = []
    for part in section.split("\n### ")[1:]:
        client = part.splitlines()[0].strip()
        for lang, body in re.findall(r"```(\w+)\n(.*?)```", part, re.S):
            out.append((client, lang, body))
    return out


def _entry(client: str, lang: str, body: str) -> dict[str, Any]:
    """The server entry, read as the client reads it."""
    if lang == "sh":
        argv = shlex.split(body)
        assert argv[:4] == ["claude", "mcp", "add", "codeexec"] and argv[4] == "--", argv
        return {"command": argv[5], "args": argv[6:]}
    config = json.loads(body)
    key = "servers" if client == "VS Code" else "mcpServers"
    entry: dict[str, Any] = config[key]["codeexec"]
    if client == "VS Code" or "type" in entry:
        assert entry["type"] == "stdio"
    return entry


def test_every_client_has_a_snippet() -> None:
    found = {client for client, _, _ in _snippets()}
    assert set(CLIENTS) <= found, found


@pytest.mark.parametrize(
    ("client", "lang", "body"),
    [s for s in _snippets() if s[0] in CLIENTS],
    ids=lambda v: v if v in CLIENTS or v in ("json", "sh") else None,
)
async def test_snippet_starts_the_server(client: str, lang: str, body: str) -> None:
    entry = _entry(client, lang, body)
    # The command as installed: the venv's bin directory first on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    params = StdioServerParameters(
        command=entry["command"],
        args=entry["args"],
        env={"PATH": path, **entry.get("env", {})},
    )
    with open(os.devnull, "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as session:
            tools = {t.name for t in (await session.list_tools()).tools}
    assert tools == TOOLS


async def test_the_uvx_snippet_runs_the_server_from_a_checkout() -> None:
    # No release exists: docs/mcp.md's uvx entry builds codeexec from a checkout
    # (this one) into uv's cache and serves from there, not from this venv.
    body = next(b for c, _, b in _snippets() if c.startswith("Without installing"))
    entry = json.loads(body)["mcpServers"]["codeexec"]
    root = str(DOC.parent.parent)
    args = [root if a == "/path/to/codeexec" else a for a in entry["args"]]
    assert entry["command"] == "uvx" and root in args, entry
    # A fresh build of the checkout as it is now, not one cached from an earlier run.
    args = ["--refresh-package", "codeexec", *args]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    params = StdioServerParameters(command="uvx", args=args, env={**os.environ, "PATH": path})
    with open(os.devnull, "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as session:
            tools = {t.name for t in (await session.list_tools()).tools}
    assert tools == TOOLS
