"""A session must not outlive its limits; the executor is out of the code's reach (issue 10).

Each test attacks from inside a real session the way hostile code would: it looks
for the session token, stops or kills the supervisor, keeps its executor busy,
wedges it through the file API, or plants modules that the executor would import.
The container must still go away in time, and nothing planted may run. Times are
printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from codeexec import CodeexecError, ContainerSession, FileTransferError
from codeexec._dockerargs import session_run_spec
from codeexec.docker import Docker
from codeexec.maintenance import gc
from codeexec.options import SessionOptions
from codeexec.pool import WarmPool

pytestmark = pytest.mark.docker

DOCKER = os.environ.get("CODEEXEC_DOCKER", "docker")
IDLE = 4.0  # seconds: short, so a container that goes away does so quickly
GONE_MARGIN = 60.0  # generous: two cores shared by many tests


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)


def _exists(container_id: str) -> bool:
    out = _docker("ps", "-a", "--quiet", "--no-trunc", "--filter", f"id={container_id}").stdout
    return bool(out.strip())


def _seconds_until_gone(container_id: str, within: float) -> float:
    start = time.monotonic()
    while _exists(container_id):
        assert time.monotonic() - start < within, (
            f"container {container_id[:12]} still exists after {within:.0f} s"
        )
        time.sleep(0.25)
    return time.monotonic() - start


def _token(session: ContainerSession) -> str:
    env = _docker("container", "inspect", "--format", "{{json .Config.Env}}", session.container_id)
    for item in json.loads(env.stdout):
        if item.startswith("CODEEXEC_TOKEN="):
            return str(item.split("=", 1)[1])
    raise AssertionError("the container has no CODEEXEC_TOKEN")


@pytest.fixture
def start(session_name: str) -> Iterator[Callable[..., ContainerSession]]:
    """Starts sessions (short idle timeout); removes whatever is left at the end."""
    made: list[ContainerSession] = []

    def _start(**options: object) -> ContainerSession:
        options.setdefault("idle_timeout", IDLE)
        session = ContainerSession.start(f"{session_name}-{len(made)}", **options)  # type: ignore[arg-type]
        made.append(session)
        return session

    yield _start
    for session in made:
        session.stop()


# The code searches every process it can see for the token: environ of every
# process and thread, and (for the record) which processes it saw.
FIND_TOKEN = textwrap.dedent(
    """
    import glob
    seen, found = [], []
    for path in glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/task/*/environ"):
        pid = path.split("/")[2]
        try:
            seen.append(open("/proc/%s/cmdline" % pid, "rb").read().replace(b"\\0", b" ").decode())
        except OSError:
            pass
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        for item in data.split(b"\\0"):
            if item.startswith(b"CODEEXEC_TOKEN=") and len(item) > len(b"CODEEXEC_TOKEN="):
                found.append(item.decode())
    print("\\n".join(found))
    repr(seen)
    """
)


def test_the_code_finds_no_token_in_any_process(start: Callable[..., ContainerSession]) -> None:
    session = start()
    token = _token(session)
    result = session.execute(FIND_TOKEN, timeout=60)
    assert result.ok, result.error
    assert "serve" in (result.value or "")  # it saw the supervisor
    assert token not in result.stdout and "CODEEXEC_TOKEN=" not in result.stdout
    # Nor through the file API, which the supervisor runs with its own /proc/self.
    for path in ("/proc/self/environ", "/proc/1/environ", "/proc/self/mem"):
        with pytest.raises(FileTransferError) as info:
            session.read_file(path)
        assert token not in str(info.value)


def test_an_exec_relay_carries_no_token(start: Callable[..., ContainerSession]) -> None:
    session = start(network="none")  # frames travel through `docker exec … relay`
    assert session.transport == "exec"
    token = _token(session)
    result = session.execute(FIND_TOKEN, timeout=60)
    assert result.ok, result.error
    assert "relay" in (result.value or "")  # the relay ran while the code looked
    assert token not in result.stdout and "CODEEXEC_TOKEN=" not in result.stdout


STOP_THE_SUPERVISOR = textwrap.dedent(
    """
    import glob, os, signal
    hit = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        pid = int(path.split("/")[2])
        try:
            cmd = open(path, "rb").read()
        except OSError:
            continue
        if pid == 1 or b"serve" in cmd or b"tini" in cmd or b"init" in cmd:
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                    hit.append((pid, sig.name))
                except OSError as exc:
                    hit.append((pid, sig.name, exc.strerror))
    hit
    """
)


def test_the_code_cannot_stop_or_kill_the_supervisor(
    start: Callable[..., ContainerSession],
) -> None:
    session = start()
    result = session.execute(STOP_THE_SUPERVISOR, timeout=60)
    assert result.ok, result.error
    assert "(1, 'SIGSTOP')" in (result.value or "")  # the signals were sent
    # No effect: the session still answers...
    assert session.execute("1 + 1", timeout=30).value == "2"
    session.close()
    # ...and still goes away at its idle timeout.
    took = _seconds_until_gone(session.container_id, IDLE + GONE_MARGIN)
    print(f"\nafter SIGSTOP/SIGKILL of PID 1: gone {took:.1f} s after the last request")


# Whatever token the code can find, it uses to ping its own executor from a
# detached process, forever.
PING_FOREVER = textwrap.dedent(
    """
    import glob, subprocess, sys
    tokens = set()
    for path in glob.glob("/proc/[0-9]*/environ") + ["/proc/1/environ"]:
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        for item in data.split(b"\\0"):
            if item.startswith(b"CODEEXEC_TOKEN="):
                tokens.add(item.split(b"=", 1)[1].decode())
    tokens.discard("")
    pinger = '''
    import json, socket, struct, sys, time
    def frame(obj):
        body = json.dumps(obj).encode()
        return struct.pack(">I", len(body)) + body
    while True:
        for token in sys.argv[1:]:
            try:
                s = socket.create_connection(("127.0.0.1", 8888), timeout=2)
                s.sendall(frame({"op": "hello", "token": token, "protocol": 1}))
                s.sendall(frame({"op": "ping"}))
                time.sleep(0.3)
                s.close()
            except OSError:
                pass
        time.sleep(0.5)
    '''
    subprocess.Popen([sys.executable, "-c", pinger, *tokens], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    len(tokens)
    """
)


def test_the_code_cannot_keep_its_session_alive(start: Callable[..., ContainerSession]) -> None:
    session = start()
    result = session.execute(PING_FOREVER, timeout=60)
    assert result.ok, result.error
    print(f"\nthe code found {result.value} token(s)")
    session.close()
    took = _seconds_until_gone(session.container_id, IDLE + GONE_MARGIN)
    print(f"with a pinger running inside: gone {took:.1f} s after the last request")


def test_a_fifo_through_the_file_api_is_refused_at_once(
    start: Callable[..., ContainerSession],
) -> None:
    session = start()
    code = (
        "import os, threading\nos.mkfifo('pipe')\nos.mkfifo('read_end')\n"
        # A reader waits on one FIFO, so that a blocking open for writing would succeed.
        "threading.Thread(target=lambda: open('read_end', 'rb').read(), daemon=True).start()"
    )
    assert session.execute(code, timeout=30).ok
    for act in (
        lambda: session.read_file("pipe"),
        lambda: session.write_file("pipe", b"x"),
        lambda: session.write_file("read_end", b"x"),
        lambda: session.read_file("/dev/zero"),
        lambda: session.write_file("/dev/null", b"x"),
    ):
        began = time.monotonic()
        with pytest.raises(FileTransferError) as info:
            act()
        assert info.value.code == "io_error"
        assert "only regular files" in str(info.value), info.value
        assert time.monotonic() - began < 10
    # The session is still usable, files work, and it still ends at its idle timeout.
    session.write_file("plain.txt", b"ok")
    assert session.read_file("plain.txt") == b"ok"
    assert session.execute("1 + 1", timeout=30).value == "2"
    session.close()
    took = _seconds_until_gone(session.container_id, IDLE + GONE_MARGIN)
    print(f"\nafter the FIFO attempts: gone {took:.1f} s after the last request")


def test_busy_code_ends_at_the_max_lifetime(start: Callable[..., ContainerSession]) -> None:
    began = time.monotonic()
    session = start(idle_timeout=600, max_lifetime=6)
    listed = [s for s in ContainerSession.list_sessions() if s.name == session.name]
    assert listed and listed[0].max_lifetime == 6.0
    # Endless busy code, and a host that keeps waiting: the lifetime still ends it.
    with pytest.raises(CodeexecError):
        session.execute("while True:\n    pass", timeout=None)
    took = time.monotonic() - began + _seconds_until_gone(session.container_id, GONE_MARGIN)
    print(f"\nmax_lifetime=6: gone {took:.1f} s after the start")
    assert took < 6 + GONE_MARGIN


def test_warm_pool_containers_carry_the_max_lifetime(session_name: str) -> None:
    with WarmPool(size=1, idle_timeout=120, max_lifetime=900) as pool:
        assert pool.wait_ready(timeout=120)
        session = ContainerSession.start(session_name, pool=pool)
        try:
            assert session.created
            listed = [s for s in ContainerSession.list_sessions() if s.name == session_name]
            assert listed and listed[0].max_lifetime == 900.0
            env = _docker(
                "container", "inspect", "--format", "{{json .Config.Env}}", session.container_id
            )
            assert "CODEEXEC_MAX_LIFETIME=900.0" in json.loads(env.stdout)
        finally:
            session.stop()


# -- gc ---------------------------------------------------------------------------------

DEAF = (
    "python",
    "-c",
    "import socket, time\n"
    "s = socket.socket(); s.bind(('0.0.0.0', 8888)); s.listen(8)\n"
    "time.sleep(3600)  # accepts, never answers",
)


@pytest.fixture
def deaf_session(session_name: str) -> Iterator[Callable[..., str]]:
    """Runs a container labelled as a session whose executor never answers a handshake."""
    docker = Docker()
    made: list[str] = []

    def _run(max_lifetime: float | None = None) -> str:
        image = ContainerSession.start(f"{session_name}-img", idle_timeout=IDLE)
        image.stop()
        spec = session_run_spec(
            SessionOptions(idle_timeout=IDLE, max_lifetime=max_lifetime),
            image=image.info.image,
            name=f"{session_name}-deaf{len(made)}",
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            suffix=f"d{len(made)}a0b1",
        )
        container_id = docker.run(replace(spec, command=DEAF), {"CODEEXEC_TOKEN": "x" * 43})
        made.append(container_id)
        return container_id

    yield _run
    docker.rm(*made)


def test_gc_treats_an_unresponsive_session_as_idle_since_its_start(
    deaf_session: Callable[..., str],
) -> None:
    container_id = deaf_session()
    began = time.monotonic()
    deadline = began + 60
    while True:  # dry runs only: other tests' sessions share this engine
        report = gc(dry_run=True, idle_for=2)
        if container_id in {c.container_id for c in report.containers}:
            break
        assert time.monotonic() < deadline, "gc never counted the deaf session as idle"
    print(f"\ngc saw the unresponsive session as stale after {time.monotonic() - began:.1f} s")
    # A long --idle-for keeps it: unresponsive counts as idle since the start, no more.
    kept = gc(dry_run=True, idle_for=3600)
    assert container_id not in {c.container_id for c in kept.containers}


def test_gc_removes_sessions_past_their_max_lifetime(deaf_session: Callable[..., str]) -> None:
    container_id = deaf_session(max_lifetime=1)
    deadline = time.monotonic() + 60
    while True:  # plain gc, no --idle-for: the lifetime is enough
        report = gc(dry_run=True)
        if container_id in {c.container_id for c in report.containers}:
            break
        assert time.monotonic() < deadline, "gc never saw the overdue session"
        time.sleep(0.5)


# -- the executor's own code -------------------------------------------------------------

PLANT = textwrap.dedent(
    """
    import os
    marker = "open('/tmp/planted-%s', 'w').write('ran')\\n"
    os.makedirs("/workspace/codeexec_executor", exist_ok=True)
    for name in ("__init__", "__main__", "server", "worker", "relay", "framing"):
        with open("/workspace/codeexec_executor/%s.py" % name, "w") as f:
            f.write(marker % ("workspace-" + name))
    os.makedirs("/tmp/.codeexec-site", exist_ok=True)
    for name in ("json", "selectors", "socket", "signal", "sitecustomize", "usercustomize"):
        with open("/tmp/.codeexec-site/%s.py" % name, "w") as f:
            f.write(marker % ("site-" + name))
        with open("/workspace/%s.py" % name, "w") as f:
            f.write(marker % ("cwd-" + name))
    'planted'
    """
)


@pytest.mark.parametrize(("network", "read_only"), [("bridge", False), ("none", True)])
def test_planted_modules_never_run(
    start: Callable[..., ContainerSession], network: str, read_only: bool
) -> None:
    session = start(network=network, read_only=read_only, idle_timeout=120)
    assert session.execute(PLANT, timeout=30).value == "'planted'"
    session.reset()  # a new worker
    session.close()  # a new connection: over "none", a new exec relay too
    result = session.execute(
        "import glob, json, socket\n"
        "sorted(glob.glob('/tmp/planted-*')), json.__file__.startswith('/usr/lib')",
        timeout=30,
    )
    assert result.ok, result.error
    assert result.value == "([], True)", result.value
    # Even with a writable root, the only writable entries of sys.path come last.
    writable = session.execute(
        "import os, sys\n[p for p in sys.path if os.access(p or '.', os.W_OK)], sys.path[-2:]",
        timeout=30,
    )
    assert writable.value == (
        "(['/workspace', '/tmp/.codeexec-site'], ['/workspace', '/tmp/.codeexec-site'])"
    ), writable.value
    # The code's own modules still import from the working directory.
    session.execute("open('mine.py', 'w').write('VALUE = 7')", timeout=30)
    assert session.execute("import mine; mine.VALUE", timeout=30).value == "7"


def test_runtime_installs_come_after_the_standard_library(
    start: Callable[..., ContainerSession],
) -> None:
    session = start(idle_timeout=120)
    code = (
        "import os, sys\nos.makedirs('/tmp/.codeexec-site', exist_ok=True)\n"
        "open('/tmp/.codeexec-site/late_mod.py', 'w').write('X = 1')\n"
    )
    assert session.execute(code, timeout=30).ok
    result = session.execute(
        "import sys, late_mod\n"
        "p = sys.path; p.index('/tmp/.codeexec-site') > p.index('/usr/lib/python3.11'), late_mod.X",
        timeout=30,
    )
    assert result.value == "(True, 1)", (result.value, result.error)


ORPHANS = textwrap.dedent(
    """
    import glob, subprocess, time
    for _ in range(10):  # each sh leaves a background sleep behind: an orphan of PID 1
        subprocess.run(["sh", "-c", "sleep 0.2 &"])
    def zombies_of_pid1():
        found = 0
        for path in glob.glob("/proc/[0-9]*/status"):
            try:
                fields = dict(l.split(":", 1) for l in open(path).read().splitlines() if ":" in l)
            except OSError:
                continue
            if fields.get("State", "").strip().startswith("Z") and fields["PPid"].strip() == "1":
                found += 1
        return found
    deadline = time.monotonic() + 20
    while zombies_of_pid1() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # every sleep has ended by now
    zombies_of_pid1()
    """
)


def test_the_supervisor_reaps_orphans_as_pid_1(start: Callable[..., ContainerSession]) -> None:
    session = start(idle_timeout=120)
    assert session.execute("import os; os.getppid()", timeout=30).value == "1"
    result = session.execute(ORPHANS, timeout=60)
    assert result.value == "0", (result.value, result.error)


# The code swaps the worker's end of its control pipe for a pipe nobody writes to,
# keeping the old end open and unread: the supervisor then blocks for good writing
# the next large cell into it, with an execution marked as running.
WEDGE = textwrap.dedent(
    """
    import os
    ctrl = None
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            link = os.readlink("/proc/self/fd/%d" % fd)
            info = open("/proc/self/fdinfo/%d" % fd).read()
        except OSError:
            continue
        flags = int(info.split("flags:")[1].split()[0], 8)
        if link.startswith("pipe:") and fd > 2 and flags & os.O_ACCMODE == os.O_RDONLY \\
                and not flags & os.O_NONBLOCK:
            ctrl = fd
    keep = os.dup(ctrl)
    unread_r, unread_w = os.pipe()
    os.dup2(unread_r, ctrl)
    ctrl
    """
)


def test_a_wedged_supervisor_still_meets_the_idle_timeout(
    start: Callable[..., ContainerSession],
) -> None:
    session = start()
    result = session.execute(WEDGE, timeout=30)
    assert result.ok and result.value, (result.value, result.error)
    errors: list[BaseException] = []

    def big_cell() -> None:
        try:
            session.execute("x = 1  # " + "a" * 400_000, timeout=5)
        except BaseException as exc:  # the container goes away under it
            errors.append(exc)

    thread = threading.Thread(target=big_cell, daemon=True)
    thread.start()
    took = _seconds_until_gone(session.container_id, 15 + IDLE + GONE_MARGIN)
    print(f"\nwedged supervisor: gone {took:.1f} s after the wedging cell")
    thread.join(30)
    assert not thread.is_alive()
