"""A real second engine that is remote in every way that matters (issue 12).

``scripts/second_engine.sh`` runs a second ``dockerd`` in a network namespace of its
own: a port it publishes on its 127.0.0.1 is unreachable from this host, exactly as
on another machine. Sessions there must be reached through the exec relay, and
nothing may be dialled on this host's loopback for them; the first engine must
keep working whatever happens to the second.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import ContainerSession, _locality, maintenance
from codeexec.docker import LABEL_MANAGED, Docker
from tests.conftest import RUN_ID, unique_name

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "second_engine.sh"
HOST = "unix:///run/codeexec-engine2/docker.sock"
CONTEXT = "codeexec-engine2"
EXE = shutil.which("codeexec", path=str(Path(sys.executable).parent)) or "codeexec"


def second_engine(verb: str) -> None:
    proc = subprocess.run(["bash", str(SCRIPT), verb], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def first_engine_works() -> None:
    """`docker info` and a container start against the first engine."""
    subprocess.run(["docker", "info"], check=True, capture_output=True, timeout=60)
    image = os.environ["CODEEXEC_BASE_IMAGE"]
    done = subprocess.run(
        ["docker", "run", "--rm", image, "echo", "first-engine-ok"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip() == "first-engine-ok", done.stderr


@pytest.fixture(scope="module")
def engine2() -> Iterator[Docker]:
    """The second engine, started (idempotently) by the project's own script."""
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("the second engine needs root (ip netns, dockerd); CI runs it as root")
    second_engine("start")
    try:
        yield Docker(host=HOST, name="e2")
    finally:
        second_engine("stop")  # nothing of the test run outlives it, the engine neither
    first_engine_works()  # whatever the tests did to the second engine


@pytest.fixture(autouse=True)
def no_leaks_on_engine2(engine2: Docker) -> Iterator[None]:
    """This run's containers on the second engine are removed, and a leak fails."""
    yield
    if not engine2_answers():
        second_engine("start")
    left = [
        s.container_id for s in engine2.ps({LABEL_MANAGED: "1"}) if s.name.startswith(f"t{RUN_ID}")
    ]
    engine2.rm(*left)
    assert not left, f"test left {len(left)} container(s) on the second engine"


def engine2_answers() -> bool:
    return subprocess.run(["bash", str(SCRIPT), "status"], timeout=60).returncode == 0


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


class Stranger:
    """A listener on this host's loopback at a port the remote engine published."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.setblocking(False)

    def knocks(self) -> int:
        """How many connections reached it (each is read and closed)."""
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            count += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dials(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP address this process connects to (socket.connect and connect_ex)."""
    seen: list[tuple[str, int]] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            seen.append(tuple(address)[:2])  # type: ignore[arg-type]
        return real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            seen.append(tuple(address)[:2])  # type: ignore[arg-type]
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return seen


def tiny_wheel() -> bytes:
    """A pure-Python wheel: what `install` can take on an engine that has no index."""
    buf = io.BytesIO()
    info = "i12pkg-1.0.dist-info"
    files = {
        "i12pkg/__init__.py": "ANSWER = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: i12pkg\nVersion: 1.0\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


# -- the engine itself -----------------------------------------------------------------


def test_the_second_engine_is_remote_and_the_first_untouched(engine2: Docker) -> None:
    _locality.forget()
    assert _locality.locality(engine2) == "remote"  # its dockerd: another network namespace
    assert _locality.locality(Docker(context=CONTEXT)) == "remote"
    assert _locality.locality(Docker()) == "local"
    first_engine_works()
    second_engine("start")  # idempotent
    first_engine_works()


# -- one session, every verb, through DOCKER_HOST ------------------------------------------


def test_every_verb_works_on_the_remote_engine_without_touching_this_hosts_loopback(
    engine2: Docker, session_name: str, dials: list[tuple[str, int]]
) -> None:
    _locality.forget()
    session = ContainerSession.start(session_name, docker=engine2, idle_timeout=600)
    stranger: Stranger | None = None
    try:
        assert session.transport == "exec" and session.route == "exec"
        assert session.info.engine == "e2" and session.info.route == "exec"
        assert session._channel.ref.address is not None
        stranger = Stranger(session._channel.ref.address[1])  # its port, on OUR loopback
        assert session.execute("x = 6 * 7").ok
        assert session.execute("x").value == "42"
        session.write_file("/workspace/a.txt", b"remote bytes")
        assert session.read_file("/workspace/a.txt") == b"remote bytes"
        session.write_file("/workspace/i12pkg-1.0-py3-none-any.whl", tiny_wheel())
        done = session.install(
            ["i12pkg @ file:///workspace/i12pkg-1.0-py3-none-any.whl"], allow_urls=True
        )
        assert done.ok, done.stderr
        assert session.execute("import i12pkg; i12pkg.ANSWER").value == "42"
        slow = session.execute("import time\nwhile True: time.sleep(0.01)", timeout=2)
        assert slow.status == "timeout"
        assert session.execute("x + 1").value == "43"  # the namespace survived
        listed = maintenance.list_everywhere(docker=engine2)
        mine = [s for s in listed.sessions if s.info.name == session_name]
        assert [(s.info.engine, s.info.route, s.info.status) for s in mine] == [
            ("e2", "exec", "running")
        ]
        assert mine[0].idle_seconds is not None
        # A fresh process, through DOCKER_HOST: exec, cp, ls, logs.
        env = {"DOCKER_HOST": HOST}
        ran = cli("exec", "-s", session_name, "x * 2", env=env)
        assert ran.returncode == 0 and ran.stdout.strip() == "84", ran.stderr
        listing = cli("ls", env=env)
        row = next(r for r in listing.stdout.splitlines() if r.startswith(session_name + " "))
        assert row.split()[-2:] == ["default", "exec"], listing.stderr  # ENGINE, ROUTE
        assert cli("logs", session_name, env=env).returncode == 0
        assert stranger.knocks() == 0  # nobody dialled the remote port on this host
    finally:
        session.stop()
        if stranger is not None:
            stranger.close()
    assert not any(host in ("127.0.0.1", "::1", "localhost") for host, _ in dials), dials
    assert not engine2.find_session(session_name, all=True)


def test_a_docker_context_reaches_it_and_gc_cleans_it(engine2: Docker, session_name: str) -> None:
    env = {"DOCKER_CONTEXT": CONTEXT}
    started = cli("start", session_name, env=env)
    assert started.returncode == 0, started.stderr
    ran = cli("exec", "-s", session_name, "import os; os.getcwd()", env=env)
    assert ran.returncode == 0 and "/workspace" in ran.stdout, ran.stderr
    timed = cli("exec", "-s", session_name, "--timeout", "1", "while True: pass", env=env)
    assert timed.returncode == 124, timed.stderr
    ref = engine2.find_session(session_name)[0]
    # Only this run's sessions live on the second engine: gc may judge them all.
    report = maintenance.gc(docker=Docker(context=CONTEXT), idle_for=0)
    assert ref.id in {c.container_id for c in report.containers}
    assert not engine2.find_session(session_name, all=True)
    assert cli("stop", session_name, env=env).returncode == 3  # gone already


def test_the_probe_without_a_visible_engine_process(
    engine2: Docker, session_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ssh:// or tcp:// engine cannot be looked at: the relay first, then one dial
    # of the published address; refused there (nothing of ours listens) = remote.
    monkeypatch.setattr(_locality, "_peer_namespace", lambda endpoint: "unknown")
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path(os.environ["XDG_CACHE_HOME"]) / "probe"))
    _locality.forget()
    with ContainerSession.start(session_name, docker=engine2) as remote:
        assert remote.execute("1 + 1").value == "2" and remote.route == "exec"
    assert _locality.locality(engine2) == "remote"
    local_name = unique_name()
    with ContainerSession.start(local_name, docker=Docker(name="host")) as local:
        assert local.execute("1 + 1").value == "2"
        assert local.transport == "tcp" and local.route in ("published", "bridge")
    assert _locality.locality(Docker()) == "local"
    _locality.forget()


# -- several engines at once ---------------------------------------------------------------


def test_ten_sessions_over_two_engines_and_one_engine_stops(
    engine2: Docker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEEXEC_ENGINES", f"host=default, e2={HOST}")
    monkeypatch.setenv("CODEEXEC_ENGINE_TIMEOUT", "20")
    names = [unique_name() for _ in range(10)]
    where = {n: ("e2" if i % 2 else "host") for i, n in enumerate(names)}
    try:
        for i, name in enumerate(names):
            if i < 8:
                ContainerSession.start(name, engine=where[name], idle_timeout=600).close()
            else:  # by name only (cli): placed on the least loaded engine
                done = cli("start", name)
                assert done.returncode == 0, done.stderr
                where[name] = engines_of([name])[name]
        on = engines_of(names)
        assert on == where and set(on.values()) == {"host", "e2"}
        for name in names:  # every one usable by name alone, wherever it lives
            ran = cli("exec", "-s", name, f"'{name}'")
            assert ran.returncode == 0 and ran.stdout.strip() == f"'{name}'", ran.stderr
        on_e2 = next(n for n in names if where[n] == "e2")
        copied = cli("cp", str(SCRIPT), f"{on_e2}:/workspace/copied.sh")
        assert copied.returncode == 0, copied.stderr
        back = cli("exec", "-s", on_e2, "len(open('/workspace/copied.sh').read())")
        assert back.stdout.strip() == str(len(SCRIPT.read_text())), back.stderr
        dup = ContainerSession.start  # a name is unique across engines
        other = "host" if where[names[1]] == "e2" else "e2"
        with pytest.raises(Exception, match="already runs on engine"):
            dup(names[1], engine=other)
        listing = cli("ls")
        assert "ENGINE" in listing.stdout and listing.returncode == 0
        second_engine("stop")  # mid-test: the second engine goes away
        started = time.monotonic()
        listing = cli("ls")
        assert time.monotonic() - started < 60
        assert "engine not answering: e2" in listing.stderr, listing.stderr
        checked = cli("doctor")
        assert checked.returncode == 3 and "FAIL engine e2" in checked.stderr, checked.stderr
        assert "ok   engine host" in checked.stderr and "session handshake" in checked.stderr
        for name in names:
            ran = cli("exec", "-s", name, "1 + 1")
            if where[name] == "host":
                assert ran.returncode == 0 and ran.stdout.strip() == "2", ran.stderr
            else:
                assert ran.returncode != 0 and name in ran.stderr
        logs = cli("logs", names[0])
        assert logs.returncode == 0, logs.stderr
    finally:
        second_engine("start")
        maintenance.stop_sessions(names)
    first_engine_works()


def engines_of(names: list[str]) -> dict[str, str]:
    """Which engine ``codeexec ls --json`` says each of ``names`` runs on."""
    listing = cli("ls", "--json")
    assert listing.returncode == 0, listing.stderr
    import json

    return {s["name"]: s["engine"] for s in json.loads(listing.stdout) if s["name"] in names}
