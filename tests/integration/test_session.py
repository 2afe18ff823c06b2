"""ContainerSession against the real Docker engine (issue: core)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import (
    ContainerSession,
    ImageBuildError,
    NoSuchSession,
    SessionBusy,
    SessionExists,
    list_sessions,
)
from codeexec.docker import Docker
from tests.conftest import RUN_ID, unique_name

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def numpy_session(docker_engine: None) -> Iterator[ContainerSession]:
    with ContainerSession.start(f"m{RUN_ID}-np", dependencies=["numpy==2.*"]) as s:
        yield s


@pytest.fixture(scope="module")
def plain(docker_engine: None) -> Iterator[ContainerSession]:
    with ContainerSession.start(f"m{RUN_ID}-plain") as s:
        yield s


def test_issue_example(numpy_session: ContainerSession) -> None:
    s = numpy_session
    r = s.execute("import numpy as np\nx = np.arange(4)\nx.sum()")
    assert r.status == "ok" and r.value in ("6", "np.int64(6)"), r
    r = s.execute("print(x * 2)")
    assert r.stdout == "[0 2 4 6]\n"
    r = s.execute("1/0")
    assert r.status == "error" and r.error is not None
    assert r.error.ename == "ZeroDivisionError"
    r = s.execute("import time\nwhile True: time.sleep(0.1)", timeout=1)
    assert r.status == "timeout" and not r.restarted
    assert s.execute("x.sum()").status == "ok"


def test_value_streams_and_child_process_output(plain: ContainerSession) -> None:
    seen: list[tuple[str, str]] = []
    r = plain.execute(
        "import os, subprocess, sys\n"
        "print('out')\nprint('err', file=sys.stderr)\n"
        "os.system('echo from-shell')\n"
        "subprocess.run(['python', '-c', 'print(42)'])\n"
        "'last'",
        on_output=lambda name, text: seen.append((name, text)),
    )
    assert r.status == "ok", r
    assert r.value == "'last'"
    assert r.stdout.splitlines() == ["out", "from-shell", "42"]
    assert r.stderr == "err\n"
    assert "".join(t for n, t in seen if n == "stdout") == r.stdout


def test_traceback_points_at_user_code(plain: ContainerSession) -> None:
    r = plain.execute("def f():\n    return {}['missing']\n\nf()")
    assert r.status == "error" and r.error is not None
    assert r.error.ename == "KeyError"
    text = r.error.format()
    assert "line 4" in text and "line 2" in text and "return {}['missing']" in text
    assert "codeexec_executor" not in text and "worker.py" not in text


def test_syntax_error_is_data(plain: ContainerSession) -> None:
    r = plain.execute("def broken(:\n    pass")
    assert r.status == "error" and r.error is not None and r.error.ename == "SyntaxError"


def test_code_ignoring_interrupt_restarts_executor(plain: ContainerSession) -> None:
    plain.execute("keep = 1")
    r = plain.execute(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True: time.sleep(0.05)",
        timeout=1,
    )
    assert r.status == "timeout" and r.restarted
    assert r.error is not None and "lost" in r.error.evalue
    r = plain.execute("keep")
    assert r.status == "error" and r.error is not None and r.error.ename == "NameError"
    assert plain.execute("1 + 1").value == "2"


def test_interrupt_from_another_thread(plain: ContainerSession) -> None:
    plain.execute("counter = 0")
    timer = threading.Timer(0.5, plain.interrupt)
    timer.start()
    r = plain.execute("import time\nwhile True:\n    counter += 1\n    time.sleep(0.01)")
    timer.join()
    assert r.status == "interrupted"
    assert int(plain.execute("counter").value or "0") > 0


def test_second_execute_at_once_is_busy(plain: ContainerSession) -> None:
    errors: list[Exception] = []
    started = threading.Event()

    def slow() -> None:
        started.set()
        plain.execute("import time; time.sleep(1.5)")

    t = threading.Thread(target=slow)
    t.start()
    started.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not errors:
        try:
            plain.execute("1")
        except SessionBusy as exc:
            errors.append(exc)
    t.join()
    assert errors and "interrupt" in str(errors[0])


def test_attach_from_another_process_sees_state(plain: ContainerSession) -> None:
    plain.execute("shared = 'from-parent'")
    code = (
        "from codeexec import ContainerSession\n"
        f"s = ContainerSession.attach({plain.name!r})\n"
        "print(s.execute('shared').value)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "'from-parent'"


def test_list_sessions_and_idempotent_start(plain: ContainerSession) -> None:
    names = {s.name for s in list_sessions()}
    assert plain.name in names
    again = ContainerSession.start(plain.name)  # same deps: attaches, builds nothing
    assert again.container_id == plain.container_id
    again.close()
    with pytest.raises(SessionExists, match="stop it first"):
        ContainerSession.start(plain.name, dependencies=["six"])


def test_start_never_hands_back_a_session_with_other_settings(session_name: str) -> None:
    # Asked for no network, start used to attach to the running session of that name,
    # which has network access. Now it refuses, naming the setting, or replaces it.
    interfaces = "import socket\nsorted(n for _, n in socket.if_nameindex())"
    first = ContainerSession.start(session_name, idle_timeout=300)
    try:
        with pytest.raises(SessionExists, match="network 'bridge' \\(asked: 'none'\\)"):
            ContainerSession.start(session_name, network="none", idle_timeout=300)
        assert first.created
        with pytest.raises(SessionExists, match="memory=1g.*asked.*memory=512m"):
            ContainerSession.start(session_name, memory="512m", idle_timeout=300)
        assert first.execute("1 + 1").value == "2"  # refused: the running one untouched
        assert first.execute(interfaces).value != "['lo']"  # it has a network
        same = ContainerSession.start(session_name, idle_timeout=300)
        assert not same.created and same.container_id == first.container_id
        same.close()
        cut_off = ContainerSession.start(
            session_name, network="none", idle_timeout=300, replace=True
        )
        try:
            assert cut_off.created and cut_off.container_id != first.container_id
            assert cut_off.execute(interfaces).value == "['lo']"  # no network at all
            assert cut_off.info.network == "none" and cut_off.transport == "exec"
            assert not first.is_running()
        finally:
            cut_off.stop()
    finally:
        first.stop()


def test_cached_image_builds_nothing(numpy_session: ContainerSession) -> None:
    lines: list[str] = []
    name = unique_name()
    with ContainerSession.start(name, dependencies=["numpy==2.*"], on_progress=lines.append) as s:
        assert s.info.image == numpy_session.info.image
        assert not any(line.startswith("building image") for line in lines), lines
        assert s.execute("import numpy; 1").status == "ok"


def test_network_none_uses_exec_relay(session_name: str) -> None:
    with ContainerSession.start(session_name, network="none") as s:
        assert s.transport == "exec"
        r = s.execute("import os\nsorted(os.listdir('/sys/class/net'))")
        assert r.status == "ok" and r.value == "['lo']", r
        r = s.execute("x = 5\nprint(x)")
        assert r.stdout == "5\n"
        assert s.execute("x * 2").value == "10"


def test_stop_is_idempotent_and_session_gone(session_name: str) -> None:
    s = ContainerSession.start(session_name)
    s.stop()
    s.stop()
    assert session_name not in {i.name for i in list_sessions()}
    with pytest.raises(NoSuchSession):
        ContainerSession.attach(session_name)
    with pytest.raises(NoSuchSession):
        s.execute("1")


def test_container_removed_from_outside_is_reported(session_name: str) -> None:
    s = ContainerSession.start(session_name)
    try:
        assert s.execute("1").value == "1"
        Docker().rm(s.container_id)
        with pytest.raises(NoSuchSession, match="is gone"):
            s.execute("1")
    finally:
        s.stop()


@pytest.mark.slow
def test_failed_build_leaves_nothing(session_name: str) -> None:
    before = _stopped_containers()
    with pytest.raises(ImageBuildError) as info:
        ContainerSession.start(session_name, dependencies=["codeexec-no-such-package-zz==9.9"])
    assert "codeexec-no-such-package-zz" in info.value.log_tail
    assert "codeexec-no-such-package-zz" in str(info.value) or "failed" in str(info.value)
    assert _stopped_containers() <= before  # --force-rm: no container of a failed step
    assert session_name not in {i.name for i in list_sessions()}


def _stopped_containers() -> set[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "status=exited", "--filter", "status=created"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return set(out.split())


def test_attach_from_cache_needs_no_docker(plain: ContainerSession, tmp_path: Path) -> None:
    plain.execute("cached = 'yes'")
    code = (
        "from codeexec import ContainerSession\n"
        f"s = ContainerSession.attach({plain.name!r})\n"
        "print(s.execute('cached').value)\n"
    )
    broken = tmp_path / "docker"  # any docker call in the child fails loudly
    broken.write_text("#!/bin/sh\necho 'docker must not be called' >&2\nexit 99\n")
    broken.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "'yes'"


def test_stale_cache_entry_falls_back_to_labels(session_name: str) -> None:
    s = ContainerSession.start(session_name)
    Docker().rm(s.container_id)  # removed behind codeexec's back: the entry is stale
    s.close()
    with pytest.raises(NoSuchSession):
        ContainerSession.attach(session_name)
    with ContainerSession.start(session_name) as again:
        attached = ContainerSession.attach(session_name)
        assert attached.container_id == again.container_id
        attached.close()
