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
    "checkpoint": ("save_checkpoint",),
    "restore": ("restore_checkpoint",),
    "checkpoints": ("list_checkpoints", "drop_checkpoint"),
    "fork": ("fork_session",),
    "restart": (),  # a model restarts by stop + start; a fresh namespace is one call away
    "reset": (),  # the same command as restart (the API's name)
    "logs": (),  # the executor's own log is for people debugging the host side
    "images": (),  # image housekeeping is the operator's job, not the model's
    "gc": (),
    "doctor": (),
    "version": (),
    "mcp": (),  # launches this server
    "snapshot": ("snapshot_session",),
    "resume": ("resume_snapshot",),
    "snapshots": ("list_snapshots", "remove_snapshot"),
    "base-image": (),  # needs root and debootstrap on the host: the operator's job
    "sh": ("run_command",),
    "files": ("list_files",),
}
# MCP tools that exist for the original server's clients and have no CLI twin:
# `reuse_code_executer` attaches, which every CLI command does by name. The job tools
# exist because an MCP client waits about 60 s for one call; a terminal waits for
# `codeexec exec` as long as it runs (and Ctrl-C interrupts it).
MCP_ONLY = {"reuse_code_executer", "start_job", "get_job", "cancel_job"}


# The session defaults a person sets for a model (`codeexec mcp`) are the options of
# `codeexec start`, with the same names and defaults.
MCP_SESSION_OPTIONS = ("network", "memory", "cpus", "base_image", "idle_timeout", "max_lifetime")


def _cli_commands() -> dict[str, str]:
    group = typer.main.get_command(app)
    commands = getattr(group, "commands", {})
    return {name: (cmd.help or cmd.short_help or "") for name, cmd in commands.items()}


def test_every_cli_command_is_mapped_and_documented() -> None:
    commands = _cli_commands()
    assert set(commands) == set(CLI_TO_MCP)
    for name, help_text in commands.items():
        assert help_text.strip(), f"`codeexec {name}` has no help text"


def test_mcp_takes_the_session_options_of_start() -> None:
    group = typer.main.get_command(app)
    commands = getattr(group, "commands", {})

    def options(command: str) -> dict[str, object]:
        return {p.name: p.default for p in commands[command].params}

    start, mcp = options("start"), options("mcp")
    for name in MCP_SESSION_OPTIONS:
        assert name in mcp, f"`codeexec mcp` lacks --{name.replace('_', '-')}"
        assert mcp[name] == start[name], name


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
