"""The host stays bounded whatever the code returns (issue 10; docs/outputs.md).

Each attack runs against the real engine and is measured in the process that
receives it: the library in a fresh subprocess, the `codeexec exec` CLI subprocess,
and the `codeexec mcp` stdio server (its own /proc/<pid>/status). The measure is the
peak resident set (VmHWM, reset through /proc/<pid>/clear_refs before the attack; for
the CLI, its VmHWM at exit against the same command running ``1``) minus the
resident set before it.

The bound, BOUND_MIB = 128 MiB over that baseline, is the caps plus one frame's
transient cost plus slack: what one execution keeps is at most 16 MiB of output +
32 MiB of displays + 1 MiB of value + 1 MiB of traceback (the library defaults; the
MCP server's are smaller); the largest frame that passes the caps is one display of
about 11 MiB on the wire, held at most ~4 times while it is read, decoded and
base64-decoded (~45 MiB); and ~30 MiB covers the allocator and the interpreter.
Before the caps, 40 displays of 8 MiB grew the host by ~400 MiB and a 50 MiB
traceback by ~150 MiB.

The endless build log uses tests/fake_docker.py (CODEEXEC_DOCKER), which prints
256 MiB of build output and fails: a fake is used for this log-volume case only,
so the test does not depend on how images are built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import TextContent

from codeexec import ContainerSession
from tests.conftest import RUN_ID, unique_name

pytestmark = [pytest.mark.docker]

MiB = 2**20
BOUND_MIB = 128  # see the module docstring
LOG_BOUND_MIB = 64  # the build log keeps 200 lines of 1000 characters
ROOT = Path(__file__).resolve().parents[2]
FAKE_DOCKER = str(ROOT / "tests" / "fake_docker.py")

DISPLAY_FLOOD = """\
class Img:
    def _repr_png_(self):
        return bytes(8 * 2**20)
for _ in range(40):
    display(Img())
'flooded'
"""
HUGE_VALUE = "'x' * 200_000_000"
# f and g alternate, so Python does not fold the 300 frames into one "repeated" line;
# each frame shows a 100 kB source line, and the message is 10 MB: ~50 MB in all.
_PAD = "p" * 100_000
HUGE_TRACEBACK = (
    f"def f(n):\n    return g(n) if n else fail()  # {_PAD}\n"
    f"def g(n):\n    return f(n - 1)  # {_PAD}\n"
    "def fail():\n    raise ValueError('e' * 10_000_000)\n"
    "f(150)\n"
)
ATTACKS = {"displays": DISPLAY_FLOOD, "value": HUGE_VALUE, "traceback": HUGE_TRACEBACK}


def _kib(field: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int | str) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def _check_growth(
    face: str, attack: str, before_kib: int, peak_kib: int, bound: int, *, show: bool = True
) -> None:
    growth = (peak_kib - before_kib) / 1024
    if show:
        print(f"\n{face} / {attack}: RSS {before_kib / 1024:.0f} MiB, peak +{growth:.0f} MiB")
    assert growth < bound, f"{face} grew by {growth:.0f} MiB under the {attack} attack"


@pytest.fixture(scope="module")
def shared(docker_engine: None) -> Iterator[ContainerSession]:
    # "m" + the run id: module-scoped, so not one test's leak (tests/conftest.py).
    with ContainerSession.start(f"m{RUN_ID}-bounds") as session:
        yield session


# -- the library, in a fresh process ---------------------------------------------------

_LIBRARY_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from codeexec import ContainerSession

    def kib(field):
        for line in open('/proc/self/status'):
            if line.startswith(field + ':'):
                return int(line.split()[1])

    s = ContainerSession.attach(sys.argv[1])
    s.execute('1')
    Path('/proc/self/clear_refs').write_text('5')
    before = kib('VmRSS')
    r = s.execute(sys.stdin.read(), timeout=300)
    peak = kib('VmHWM')
    e = r.error
    print(json.dumps({
        "before": before, "peak": peak, "status": r.status, "truncated": r.truncated,
        "value_head": (r.value or '')[:20], "value_len": len(r.value or ''),
        "images": sum('image/png' in d.data for d in r.displays),
        "notes": [str(d.data.get('text/plain')) for d in r.displays if len(d.data) == 1],
        "error_len": 0 if e is None else len(e.evalue) + len(e.format()),
        "last_line": '' if e is None else e.traceback[-1][:30],
    }))
    s.close()
    """
)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_library_stays_bounded(shared: ContainerSession, attack: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _LIBRARY_CHILD, shared.name],
        input=ATTACKS[attack],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    m = json.loads(child.stdout)
    assert m["truncated"], m
    _check_growth("library", attack, m["before"], m["peak"], BOUND_MIB)
    if attack == "displays":
        assert m["status"] == "ok" and m["value_head"] == "'flooded'", m
        assert m["images"] == 2 and "over the limit of 33554432 bytes" in m["notes"][-1], m
    elif attack == "value":
        assert m["value_head"].startswith("'xxxx") and m["value_len"] < MiB + 200, m
    else:
        assert m["status"] == "error" and m["last_line"].startswith("ValueError: eeee"), m
        assert m["error_len"] < 2 * (MiB + 4096), m
    assert shared.execute("'usable'").value == "'usable'"


# -- the CLI -------------------------------------------------------------------------


# The console script's entry point, then its own peak: VmHWM, not ru_maxrss, which
# starts from the forking parent's size (the test process) and counts no exec'd image.
_CLI_CHILD = """\
import sys
from codeexec.cli import main
sys.argv[0] = "codeexec"
try:
    main()
finally:
    status = open("/proc/self/status").read()
    with open(_peak_file, "w") as f:
        f.write(status.split("VmHWM:")[1].split()[0])
"""


def _cli_peak_kib(args: list[str], tmp: Path) -> tuple[int, str, str]:
    """Run ``codeexec ARGS``; return its peak RSS (KiB), stdout and stderr."""
    out, err, peak = tmp / "stdout", tmp / "stderr", tmp / "peak"
    code = f"_peak_file = {str(peak)!r}\n" + _CLI_CHILD
    with out.open("wb") as o, err.open("wb") as e:
        subprocess.run([sys.executable, "-c", code, *args], stdout=o, stderr=e, timeout=600)
    return int(peak.read_text()), out.read_text(errors="replace"), err.read_text(errors="replace")


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_cli_exec_stays_bounded(shared: ContainerSession, attack: str, tmp_path: Path) -> None:
    code = tmp_path / "attack.py"
    code.write_text(ATTACKS[attack])
    saved = tmp_path / "saved"
    common = ["exec", "--session", shared.name, "--save-dir", str(saved)]
    before, _, _ = _cli_peak_kib([*common, "1"], tmp_path)
    peak, stdout, stderr = _cli_peak_kib([*common, "--file", str(code)], tmp_path)
    _check_growth("codeexec exec", attack, before, peak, BOUND_MIB)
    assert "the result was truncated" in stderr, stderr[-2000:]
    if attack == "displays":
        assert stdout == "'flooded'\n" and len(list(saved.glob("*.png"))) == 2
    elif attack == "value":
        assert stdout.startswith("'xxxx") and len(stdout) < MiB + 200
    else:
        assert "ValueError: eeee" in stderr and "traceback lines omitted" in stderr
        assert len(stderr) < 2 * (MiB + 4096)


# -- the MCP server ------------------------------------------------------------------


def _server_pid() -> int:
    """The `codeexec mcp` process the stdio client started (a child of this one)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and cmdline[1:4] == [b"-m", b"codeexec", b"mcp"]:
            return int(entry.name)
    raise AssertionError("the codeexec mcp process was not found")


@asynccontextmanager
async def _mcp(*args: str, **env: str) -> AsyncIterator[tuple[Client, int]]:
    passed = {k: v for k, v in os.environ.items() if k.startswith(("CODEEXEC_", "DOCKER_"))}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "codeexec", "mcp", *args],
        env={**passed, "CODEEXEC_MCP_DEFAULT_SESSION": unique_name(), **env},
    )
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                yield client, _server_pid()
        finally:
            errlog.seek(0, os.SEEK_END)
            errlog.seek(max(0, errlog.tell() - 4000))
            sys.stderr.write(errlog.read())  # shown by pytest when a test fails


def _text(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return str(block.text)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _watched_call(
    client: Client, pid: int, bound: int, what: str, tool: str, args: dict[str, Any]
) -> Any:
    """Call ``tool``, failing as soon as the server grows ``bound`` MiB past where it was.

    Watching while the call runs keeps a failure quick: the old code grew the server
    to 2 GiB, then spent minutes sending the result.
    """
    _reset_peak(pid)
    before = _kib("VmRSS", pid)
    done: list[Any] = []

    async def call() -> None:
        done.append(await client.call_tool(tool, args))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        while not done:
            _check_growth("codeexec mcp", what, before, _kib("VmHWM", pid), bound, show=False)
            await anyio.sleep(0.05)
    _check_growth("codeexec mcp", what, before, _kib("VmHWM", pid), bound)
    return done[0]


@pytest.mark.anyio
@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_mcp_server_stays_bounded(attack: str) -> None:
    async with _mcp() as (client, pid):
        warm = await client.call_tool("execute_code", {"code": "1"})
        assert not warm.is_error, _text(warm)
        args = {"code": ATTACKS[attack], "timeout": 300}
        result = await _watched_call(client, pid, BOUND_MIB, attack, "execute_code", args)
        text = _text(result)
        assert not result.is_error, text[:2000]
        out = result.structured_content
        assert out is not None and out["truncated"], text[:2000]
        assert len(text) < 400_000 and "note: output was truncated" in text
        if attack == "displays":
            # Every 11 MiB image is over the 8 MiB cap: none comes back as image content
            # (the text is a summary, then the structured JSON).
            assert out["value"] == "'flooded'"
            assert "image/png" not in out["display_mime_types"], out["display_mime_types"]
            assert [c.type for c in result.content] == ["text", "text"]
            assert "over the limit of 8388608 bytes" in text
        elif attack == "traceback":
            assert "ValueError: eeee" in text and "traceback lines omitted" in text


@pytest.mark.anyio
async def test_mcp_server_stays_bounded_under_an_endless_build_log() -> None:
    fake = {
        "CODEEXEC_DOCKER": FAKE_DOCKER,
        "FAKE_DOCKER_FLOOD_MIB": "256",
        "FAKE_DOCKER_FAIL": "image",
        "FAKE_DOCKER_STDERR": "Error: No such image: x\n",
    }
    async with _mcp("--build-wait", "600", **fake) as (client, pid):
        args = {"dependencies": ["six"]}
        started = await _watched_call(
            client, pid, LOG_BOUND_MIB, "build log", "start_code_executer", args
        )
        assert started.is_error and "build" in _text(started), _text(started)[:2000]
        assert len(_text(started)) < 10_000
