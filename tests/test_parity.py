"""The CLI and the MCP server expose the same capabilities (a mapping decides each)."""

from __future__ import annotations

import pytest
import typer
from mcp import Client

from codeexec.cli import app
from codeexec.mcp_server import build_server

# CLI command -> the MCP tools that do the same; () marks a terminal-only command,
# with the reason beside it.
CLI_TO_MCP: dict[str, tuple[str, ...]] = {
    "start": ("start_code_executer",),
    "exec": ("execute_code",),
    "stop": ("stop_code_executer",),
    "ls": ("list_sessions",),
    "install": ("install_packages",),
    "cp": ("write_file", "read_file"),
    "restart": (),  # a model restarts by stop + start; a fresh namespace is one call away
    "logs": (),  # the executor's own log is for people debugging the host side
    "images": (),  # image housekeeping is the operator's job, not the model's
    "gc": (),
    "doctor": (),
    "version": (),
    "mcp": (),  # launches this server
}
# MCP tools that exist for the original server's clients and have no CLI twin:
# `reuse_code_executer` attaches, which every CLI command does by name.
MCP_ONLY = {"reuse_code_executer"}


def _cli_commands() -> dict[str, str]:
    group = typer.main.get_command(app)
    commands = getattr(group, "commands", {})
    return {name: (cmd.help or cmd.short_help or "") for name, cmd in commands.items()}


def test_every_cli_command_is_mapped_and_documented() -> None:
    commands = _cli_commands()
    assert set(commands) == set(CLI_TO_MCP)
    for name, help_text in commands.items():
        assert help_text.strip(), f"`codeexec {name}` has no help text"


@pytest.mark.anyio
async def test_every_mcp_tool_is_mapped_and_described() -> None:
    async with Client(build_server()) as client:
        tools = (await client.list_tools()).tools
    names = {t.name for t in tools}
    mapped = {tool for targets in CLI_TO_MCP.values() for tool in targets}
    assert names == mapped | MCP_ONLY
    for tool in tools:
        assert tool.description and len(tool.description) > 40, tool.name


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
