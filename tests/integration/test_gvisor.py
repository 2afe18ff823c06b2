"""Sessions under gVisor (``runtime="runsc"``) on the real engine (issue #12).

What differs from runc, and what codeexec does about it: a memory or process bomb
ends the whole sandbox (reported as the session gone), and a gVisor start that
fails leaves its sandbox running with no container the engine lists, which
codeexec's failure path and ``codeexec gc`` reap (``Docker.reap``).

Provoking a failed start: the test-only runtime ``codeexec-test-failing-runsc`` is
runsc without ``--network`` runtime arguments, which on an engine in the host's
network namespace fails every start after creating the sandbox ("cannot run with
network enabled in root network namespace"). It is ADDED to daemon.json (nothing
there is changed) and the engine reloaded with SIGHUP, like scripts/ensure_docker.sh
does for ``runsc``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import ContainerSession, NoSuchSession
from codeexec.docker import Docker
from codeexec.errors import ConnectionLost, ContainerStartError
from codeexec.images import default_base_image
from tests.conftest import RUN_ID, require

pytestmark = pytest.mark.docker

DOCKER = os.environ.get("CODEEXEC_DOCKER", "docker")
FAILING = "codeexec-test-failing-runsc"
DAEMON_JSON = Path(os.environ.get("CODEEXEC_DAEMON_JSON", "/etc/docker/daemon.json"))


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)


def _processes_of(container_id: str) -> list[str]:
    """The host's processes whose command line names the container (shim, sandbox, gofer)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pid.isdigit() and container_id in cmdline:
            found.append(f"{pid} {cmdline[:80]}")
    return found


def _wait_gone(container_id: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while (left := _processes_of(container_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes of {container_id[:12]} still run: {left}"


@pytest.fixture(scope="module")
def gvisor(docker_engine: None, request: pytest.FixtureRequest) -> None:
    runtimes = Docker().runtimes()
    if "runsc" not in runtimes:
        require(request, f"the engine has no runsc runtime ({sorted(runtimes)}): `make engine`")


@pytest.fixture(scope="module")
def failing_runtime(gvisor: None) -> str:
    """The test-only runtime whose every start fails after its sandbox was made."""
    if FAILING in Docker().runtimes():
        return FAILING
    config = json.loads(DAEMON_JSON.read_text()) if DAEMON_JSON.exists() else {}
    config.setdefault("runtimes", {}).setdefault(FAILING, {"path": Docker().runtimes()["runsc"]})
    staged = DAEMON_JSON.with_name(f".daemon.json.{RUN_ID}")
    staged.write_text(json.dumps(config, indent=2) + "\n")
    staged.chmod(0o644)
    staged.replace(DAEMON_JSON)  # atomically: dockerd never reads half a file
    pid = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()[0]
    os.kill(int(pid), 1)  # SIGHUP: dockerd reloads its runtimes
    deadline = time.monotonic() + 30
    while FAILING not in Docker().runtimes():
        assert time.monotonic() < deadline, "dockerd did not pick up the test runtime"
        time.sleep(0.2)
    return FAILING


@pytest.fixture
def under_gvisor(gvisor: None, session_name: str) -> Iterator[ContainerSession]:
    with ContainerSession.start(session_name, memory="256m", pids=128, runtime="runsc") as s:
        yield s


def test_a_runsc_session_runs_under_gvisor(under_gvisor: ContainerSession) -> None:
    runtime = _docker("inspect", "--format", "{{.HostConfig.Runtime}}", under_gvisor.container_id)
    assert runtime.stdout.strip() == "runsc"
    # gVisor's kernel is its own: its dmesg is gVisor's, not the host's.
    dmesg = under_gvisor.execute(
        "import subprocess\nsubprocess.run(['dmesg'], capture_output=True, text=True).stdout"
    )
    assert dmesg.ok and "gVisor" in (dmesg.value or ""), dmesg
    assert under_gvisor.execute("6 * 7").value == "42"


@pytest.mark.parametrize(
    "code",
    [
        "hog = []\nwhile True:\n    hog.append(b'x' * 10**7)",
        "import os\nwhile True:\n    os.fork()",
    ],
    ids=["memory-bomb", "fork-bomb"],
)
def test_a_bomb_under_gvisor_ends_the_session_clearly(
    under_gvisor: ContainerSession, code: str
) -> None:
    """gVisor's sandbox is one unit to the host's cgroup: a bomb ends all of it."""
    under_gvisor.execute("kept = 1")
    try:
        r = under_gvisor.execute(code, timeout=60)
    except (NoSuchSession, ConnectionLost) as exc:
        assert "start" in exc.message  # says what to do
    else:  # the worker alone was stopped: the session lives on
        assert r.status in ("error", "timeout"), r
        assert under_gvisor.execute("6 * 7").value == "42"
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork
    deadline = time.monotonic() + 60
    while under_gvisor.is_running() and under_gvisor.execute("1").value != "1":
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_a_failed_gvisor_start_leaves_no_container_and_no_sandbox(
    failing_runtime: str, session_name: str
) -> None:
    with pytest.raises(ContainerStartError) as info:
        ContainerSession.start(session_name, runtime=failing_runtime)
    container_id = info.value.stdout.strip().splitlines()[-1]
    assert len(container_id) == 64, info.value.stdout
    assert "runtime" in info.value.message
    assert _docker("inspect", container_id).returncode != 0  # no container
    _wait_gone(container_id)  # nor its shim, sandbox or gofer


def test_reap_removes_the_sandbox_of_a_start_that_failed_elsewhere(
    failing_runtime: str,
) -> None:
    """What `codeexec gc` does (maintenance.gc calls Docker.reap): the same leftovers
    made by a plain `docker run`, which does not clean up after itself."""
    name = f"t{RUN_ID}-leak"
    proc = _docker("run", "--detach", "--rm", "--name", name, "--runtime", failing_runtime,
                   default_base_image(), "sleep", "600")  # fmt: skip
    assert proc.returncode != 0, proc
    container_id = proc.stdout.strip().splitlines()[-1]
    try:
        assert _processes_of(container_id), "the failed start left nothing: cannot test"
        assert _docker("inspect", container_id).returncode != 0
        # A shim younger than the reaper's grace might belong to a container made
        # since the engine was listed: it is spared until then.
        time.sleep(35)
        assert container_id in Docker().reap(default_base_image())
        _wait_gone(container_id)
    finally:
        if _processes_of(container_id):  # a failed test must not leak it either
            Docker().reap(default_base_image(), [container_id], runtime="runsc")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_server_runtime_option_starts_its_sessions_under_gvisor(
    gvisor: None, session_name: str, anyio_backend: str
) -> None:
    """`codeexec mcp --runtime runsc`: every session the model starts runs under gVisor."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from tests.conftest import _session_containers

    env = {k: v for k, v in os.environ.items() if k.startswith(("CODEEXEC_", "DOCKER_"))}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "codeexec", "mcp", "--runtime", "runsc"], env=env
    )
    async with Client(stdio_client(params)) as client:
        started = await client.call_tool("start_code_executer", {"name": session_name})
        assert not started.is_error, started
        (container,) = _session_containers("", [session_name])
        runtime = _docker("inspect", "--format", "{{.HostConfig.Runtime}}", container)
        assert runtime.stdout.strip() == "runsc"
        ran = await client.call_tool("execute_code", {"code": "6 * 7", "name": session_name})
        assert not ran.is_error and ran.structured_content is not None
        assert ran.structured_content["value"] == "42"
