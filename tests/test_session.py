"""ContainerSession without an engine: the fake docker plus the real executor, locally.

``tests/fake_docker.py`` with ``FAKE_DOCKER_STATE`` (``tests/fake_engine.py``) runs
the real executor as a local process for each ``docker run`` and answers
``inspect``/``ps``/``rename``/``rm``/``exec -i … relay`` from its records, so
``start``, ``execute``, streaming, interrupts, files, ``attach`` through the
address cache, gone detection, ``replace`` and the warm pool run here with no
Docker engine. The same paths against a real engine: tests/integration/.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from codeexec import (
    CodeexecError,
    ContainerSession,
    ExecResult,
    InvalidDependency,
    InvalidOption,
    NoSuchSession,
    SessionBusy,
    SessionExists,
    StreamEvent,
    list_sessions,
)
from codeexec.client import ExecutorClient
from codeexec.docker import Docker
from codeexec.models import SessionRef
from codeexec.options import SessionOptions
from codeexec.pool import WarmPool
from tests import fake_engine

DEADLINE = 60.0


@pytest.fixture
def engine(local_engine: Path) -> Path:
    """The fake engine's state directory (tests/conftest.py: ``local_engine``)."""
    return local_engine


def _calls(engine: Path) -> list[list[str]]:
    log = engine.parent / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


def _running(engine: Path) -> set[str]:
    return {
        r["Id"] for r in fake_engine._records(engine) if fake_engine._alive(r)
    }  # fmt: skip


def test_start_execute_stream_and_stop(engine: Path) -> None:
    session = ContainerSession.start("alpha", idle_timeout=300)
    assert session.created and session.name == "alpha" and session.transport == "tcp"
    assert session.execute("x = 41\nx + 1").value == "42"
    seen: list[tuple[str, str]] = []
    result = session.execute("print('hi'); x", on_output=lambda n, t: seen.append((n, t)))
    assert result.value == "41" and result.stdout == "hi\n"
    assert {n for n, _ in seen} == {"stdout"} and "".join(t for _, t in seen) == "hi\n"
    events = list(session.execute_stream("import sys; print('a'); print('b', file=sys.stderr)"))
    text = {n: "".join(e.text for e in events if isinstance(e, StreamEvent) and e.name == n)
            for n in ("stdout", "stderr")}  # fmt: skip
    assert text == {"stdout": "a\n", "stderr": "b\n"}
    assert isinstance(events[-1], ExecResult) and events[-1].ok
    assert session.ping()["busy"] is False
    assert [s.name for s in list_sessions()] == ["alpha"]
    session.stop()
    assert _running(engine) == set()
    with pytest.raises(NoSuchSession, match="was stopped"):
        session.execute("1")
    session.stop()  # idempotent


def test_start_attaches_to_the_same_settings_and_refuses_others(engine: Path) -> None:
    first = ContainerSession.start("beta", memory="512m")
    again = ContainerSession.start("beta", SessionOptions(limits=first_limits()))
    assert not again.created and again.container_id == first.container_id
    with pytest.raises(SessionExists) as refused:
        ContainerSession.start("beta", network="none", memory="512m")
    message = str(refused.value)
    assert "network 'bridge' (asked: 'none')" in message and "--replace" in message
    with pytest.raises(SessionExists, match="limits .*memory=512m.*asked.*memory=1g"):
        ContainerSession.start("beta")
    with pytest.raises(SessionExists, match="read_only True .asked: False."):
        ContainerSession.start("beta", memory="512m", read_only=False)
    assert _running(engine) == {first.container_id}  # nothing was started or removed
    again.close()
    first.stop()


def first_limits() -> object:
    return SessionOptions.of(memory="512m").limits


def test_replace_starts_a_new_session_with_the_asked_settings(engine: Path) -> None:
    old = ContainerSession.start("gamma")
    assert old.execute("x = 1").ok
    new = ContainerSession.start("gamma", network="none", replace=True)
    old.close()
    assert new.created and new.container_id != old.container_id
    assert new.info.network == "none" and new.transport == "exec"  # over the real relay
    assert _running(engine) == {new.container_id}
    assert new.execute("'x' in dir()").value == "False"  # a fresh namespace
    with pytest.raises(CodeexecError, match="network 'none'"):
        new.install(["six"])  # refused before anything runs
    with pytest.raises(InvalidDependency):
        new.install(["--index-url=http://evil/ six"])
    new.stop()


def test_interrupt_reset_and_one_execution_at_a_time(engine: Path) -> None:
    session = ContainerSession.start("delta")
    results: list[ExecResult] = []
    started = threading.Event()
    worker = threading.Thread(
        target=lambda: results.append(
            session.execute(
                "import time\nn = 7\nprint('go', flush=True)\ntime.sleep(60)",
                on_output=lambda name, text: started.set(),
            )
        )
    )
    worker.start()
    assert started.wait(DEADLINE)
    with pytest.raises(SessionBusy, match="another execution is running in session 'delta'"):
        session.execute("1")
    with pytest.raises(SessionBusy):
        session.write_file("f", b"")  # every request, not only executions
    session.interrupt()
    worker.join(DEADLINE)
    assert results and results[0].status == "interrupted"
    assert session.execute("n").value == "7"  # the namespace survived
    session.reset()
    assert session.execute("n").error is not None  # ... and reset dropped it
    session.stop()


def test_files_travel_over_the_executor(engine: Path, tmp_path: Path) -> None:
    session = ContainerSession.start("epsilon")
    assert session.write_file("data.txt", b"hello\n") == 6
    assert session.read_file("data.txt") == b"hello\n"
    local = tmp_path / "up.bin"
    local.write_bytes(bytes(range(256)))
    assert session.upload(local, "") == 256  # "" or a trailing "/": the file keeps its name
    assert session.execute("open('up.bin', 'rb').read() == bytes(range(256))").value == "True"
    target = session.download("data.txt", tmp_path)
    assert target.read_bytes() == b"hello\n"
    session.stop()


def test_attach_reaches_a_session_through_the_cache_without_docker(engine: Path) -> None:
    started = ContainerSession.start("zeta")
    assert started.execute("y = 5").ok
    started.close()
    calls = len(_calls(engine))
    attached = ContainerSession.attach("zeta", docker=Docker(binary="/nonexistent/docker"))
    assert attached.execute("y").value == "5"
    assert len(_calls(engine)) == calls  # no docker call at all
    attached.close()
    started.stop()


def test_a_session_removed_from_outside_is_gone(engine: Path) -> None:
    session = ContainerSession.start("eta")
    assert session.execute("1").ok
    Docker().rm(session.container_id)  # e.g. `docker rm -f` in another terminal
    with pytest.raises(NoSuchSession, match="is gone"):
        session.execute("1")
    with pytest.raises(NoSuchSession, match="no running session named 'eta'"):
        ContainerSession.attach("eta")  # the cache entry was dropped, the labels agree
    session.close()


def test_the_connect_seam_replaces_how_the_executor_is_reached(engine: Path) -> None:
    reached: list[SessionRef] = []

    def connect(ref: SessionRef, deadline: float) -> ExecutorClient:
        reached.append(ref)
        assert ref.address is not None
        host, port = ref.address
        return ExecutorClient.connect_tcp(host, port, ref.token, session=ref.name or None)

    session = ContainerSession.start("theta", connect=connect)
    assert session.execute("2 * 21").value == "42"
    assert [r.id for r in reached] == [session.container_id]
    assert reached[0].labels["codeexec.session"] == "theta"
    session.stop()


def test_options_are_validated_before_any_docker_call(engine: Path) -> None:
    with pytest.raises(InvalidOption, match="network 'host'"):
        ContainerSession.start("iota", network="host")
    with pytest.raises(InvalidOption, match="transport"):
        SessionOptions(transport="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown session option"):
        ContainerSession.start("iota", memroy="1g")
    assert _calls(engine) == []


def test_options_fold_memory_cpus_pids_into_limits() -> None:
    options = SessionOptions.of(memory="512m", cpus=2, pids=64, dependencies="six")
    assert (options.limits.memory, options.limits.cpus, options.limits.pids) == ("512m", 2, 64)
    assert options.dependencies == ("six",)
    explicit = SessionOptions.of(options, memory="2g", limits=SessionOptions().limits)
    assert explicit.limits == SessionOptions().limits  # an explicit limits wins
    assert SessionOptions.of(max_lifetime=0).max_lifetime is None
    assert SessionOptions.of(cpus=2).pool_key() == SessionOptions.of(cpus=2.0).pool_key()
    assert SessionOptions.of(cpus=2).pool_key() != SessionOptions.of(cpus=3).pool_key()


def test_warm_pool_claims_without_an_engine(engine: Path) -> None:
    with WarmPool(size=1, idle_timeout=300) as pool:
        assert pool.wait_ready(timeout=DEADLINE)
        assert list_sessions() == []  # an unclaimed container is no session
        session = ContainerSession.start("kappa", pool=pool)
        assert session.created and session.info.container_name.startswith("codeexec-kappa-")
        assert session.execute("1 + 1").value == "2"
        assert [s.name for s in list_sessions()] == ["kappa"]
        again = ContainerSession.attach("kappa")
        assert again.container_id == session.container_id
        again.close()
        assert pool.wait_ready(timeout=DEADLINE)  # refilled
    assert _running(engine) == {session.container_id}  # close() removed the unclaimed one
    session.stop()
