"""`codeexec mcp` driven by clients that share no code with it: the official TypeScript
SDK (``tests/mcp_clients/sdk_client.mjs``) and the MCP Inspector's CLI, pinned by
``tests/mcp_clients/package-lock.json`` and installed by ``make test`` (``npm ci``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import _session_containers, unique_name
from tests.test_mcp_server import TOOLS

pytestmark = pytest.mark.docker

CLIENTS = Path(__file__).parent.parent / "mcp_clients"
CODEEXEC = str(Path(sys.executable).with_name("codeexec"))


def node() -> str:
    binary = shutil.which("node")
    assert binary, "node is not installed (Debian: apt-get install nodejs npm)"
    assert (CLIENTS / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir(), (
        "the npm clients are not installed: run `make npm-clients` (npm ci in tests/mcp_clients)"
    )
    return binary


def run_client(
    args: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [node(), *args],
        cwd=CLIENTS,
        env={**os.environ, "EXPECTED_TOOLS": str(len(TOOLS)), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    sys.stdout.write(proc.stdout)  # pytest shows it on failure; the closing note quotes it
    sys.stderr.write(proc.stderr[-6000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_typescript_sdk_client_over_stdio() -> None:
    default, named = unique_name(), unique_name()
    began = time.monotonic()
    proc = run_client(
        ["sdk_client.mjs", "seed", "stdio", CODEEXEC, "mcp"],
        {"CODEEXEC_MCP_DEFAULT_SESSION": default, "CODEEXEC_TEST_NAMES": f"{default},{named}"},
    )
    took = time.monotonic() - began
    out = proc.stdout
    assert "start_code_executer" in out and "closed in" in out
    assert '"resources"' not in out  # no capability it does not serve
    # The client closed the connection; the server exited and removed its sessions.
    assert _session_containers("", (default, named)) == set()
    print(f"TypeScript SDK flow: {took:.1f} s")


def test_inspector_cli_lists_and_calls(tmp_path: Path) -> None:
    default = unique_name()
    inspector = CLIENTS / "node_modules" / ".bin" / "mcp-inspector"
    env = {
        "CODEEXEC_MCP_DEFAULT_SESSION": default,
        "MCP_CATALOG_PATH": str(tmp_path / "catalog.json"),  # not the user's ~/.mcp-inspector
    }
    # The Inspector starts the server with a bare environment plus its -e pairs.
    server_env = {k: v for k, v in os.environ.items() if k.startswith("CODEEXEC_")}
    server = [f"-e{k}={v}" for k, v in {**server_env, **env}.items()] + [CODEEXEC, "mcp"]
    listed = run_client(
        [str(inspector), "--cli", *server, "--method", "tools/list"], env, timeout=120
    )
    tools = json.loads(listed.stdout)["tools"]
    assert {t["name"] for t in tools} == TOOLS and all(t.get("annotations") for t in tools)
    called = run_client(
        [
            str(inspector),
            "--cli",
            *server,
            "--method",
            "tools/call",
            "--tool-name",
            "execute_code",
            "--tool-arg",
            "code=6 * 7",
        ],
        env,
        timeout=300,
    )
    result = json.loads(called.stdout)
    assert result["structuredContent"]["value"] == "42", result
    assert _session_containers("", (default,)) == set()


def test_a_call_right_after_a_cancel_runs_over_stdio() -> None:
    default = unique_name()
    proc = run_client(
        ["sdk_client.mjs", "cancel", "stdio", CODEEXEC, "mcp"],
        {"CODEEXEC_MCP_DEFAULT_SESSION": default},
    )
    assert "10 cancels" in proc.stdout
    assert _session_containers("", (default,)) == set()


@pytest.mark.slow
def test_a_90_s_execution_outlives_a_60_s_request_timeout() -> None:
    default = unique_name()
    proc = run_client(
        ["sdk_client.mjs", "long", "stdio", CODEEXEC, "mcp"],
        {"CODEEXEC_MCP_DEFAULT_SESSION": default},
    )
    assert "long run:" in proc.stdout and "step 8" in proc.stdout
