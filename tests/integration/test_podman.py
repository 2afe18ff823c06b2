"""codeexec on podman (``CODEEXEC_DOCKER=podman``), as root, against the real engine.

The subset that covers every verb where podman differs from docker (issue #12):
start (the image build and the run argv: ulimits, the /workspace tmpfs), execute,
a timeout, files, a dependency install (build, confined run, commit) and a runtime
install, stop, `codeexec start/exec/ls/stop` (the ps format), `gc`, both transports
(the published port and `podman exec -i`) and the hostile basics (memory and fork
bombs, the confinement seen from inside). The rest of the suite exercises code that
does not depend on the engine's flavour. Set up by `make podman`
(scripts/ensure_podman.sh: Debian's podman and catatonit, the base image copied in).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import ContainerSession, maintenance
from codeexec.docker import Docker
from codeexec.images import default_base_image
from tests.conftest import RUN_ID, require, unique_name

pytestmark = pytest.mark.docker

PODMAN = "podman"
EXE = shutil.which("codeexec", path=str(Path(sys.executable).parent)) or "codeexec"


def _podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)


def _mine() -> list[str]:
    """This run's podman containers (session label t<RUN_ID>-…)."""
    out = _podman("ps", "-a", "--filter", "label=codeexec.managed=1", "--format",
                  '{{.ID}} {{index .Labels "codeexec.session"}}').stdout  # fmt: skip
    return [line.split()[0] for line in out.splitlines() if f" t{RUN_ID}" in f" {line}"]


@pytest.fixture
def podman(
    docker_engine: None, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Docker]:
    """The podman engine as codeexec's, for the test; it must leave no container there."""
    problem = (
        "podman is not installed"
        if not shutil.which(PODMAN)
        else "podman has no base image"
        if _podman("image", "exists", default_base_image()).returncode != 0
        else ""
    )
    if problem:
        require(request, f"{problem}: run `make podman` (as root)")
    monkeypatch.setenv("CODEEXEC_DOCKER", PODMAN)
    docker = Docker()
    assert docker.flavour == "podman"
    yield docker
    left = _mine()
    if left:
        _podman("rm", "-f", *left)
        pytest.fail(f"test left podman container(s) behind: {left}")


def test_a_podman_session_runs_code_keeps_state_times_out_and_moves_files(
    podman: Docker, session_name: str, tmp_path: Path
) -> None:
    with ContainerSession.start(session_name, docker=podman) as s:
        assert s.execute("x = 41").ok
        assert s.execute("x + 1").value == "42"
        r = s.execute("while True:\n    pass", timeout=1)
        assert r.status == "timeout" and not r.restarted, r
        assert s.execute("x").value == "41"
        local = tmp_path / "data.txt"
        local.write_text("hello podman")
        assert s.upload(local, "/workspace/data.txt") == 12
        assert s.execute("open('/workspace/data.txt').read()").value == "'hello podman'"
        s.download("/workspace/data.txt", tmp_path / "back.txt")
        assert (tmp_path / "back.txt").read_text() == "hello podman"
        inspect = json.loads(_podman("container", "inspect", s.container_id).stdout)[0]
        assert inspect["Config"]["Labels"]["codeexec.session"] == session_name
    assert not s.is_running()


def test_the_confinement_holds_under_podman(
    podman: Docker, session_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # conmon would leave an `oom` file in podman's directory
    with ContainerSession.start(session_name, memory="256m", pids=128, docker=podman) as s:
        inside = s.execute(
            "import os, resource\n"
            "st = os.stat('/workspace')\n"
            "caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
            "(os.getuid(), st.st_uid, oct(st.st_mode & 0o777), caps.split()[1],"
            " resource.getrlimit(resource.RLIMIT_CORE))"
        )
        # podman gives the tmpfs the mode of the image's /workspace directory (0755),
        # whatever `mode=` says; docker gives it 0700. Its owner is the session user.
        assert inside.value == "(10001, 10001, '0o755', '0000000000000000', (0, 0))", inside
        read_only = s.execute("open('/etc/x', 'w')")
        assert read_only.error is not None and "Read-only file system" in read_only.error.evalue
        s.execute("kept = 1")
        bomb = s.execute("hog = []\nwhile True:\n    hog.append(b'x' * 10**7)", timeout=60)
        assert bomb.status == "error" and bomb.restarted, bomb
        assert bomb.error is not None and bomb.error.ename == "ExecutorDied"
        forks = s.execute("import os\nwhile True:\n    os.fork()", timeout=30)
        assert forks.error is not None and forks.error.ename == "BlockingIOError", forks
        assert s.execute("6 * 7").value == "42"
    assert list(tmp_path.iterdir()) == [], "podman ran in the caller's directory"


def test_the_exec_relay_works_through_podman_exec(podman: Docker, session_name: str) -> None:
    with ContainerSession.start(session_name, transport="exec", docker=podman) as s:
        assert s.route == "exec"
        assert s.execute("print('via podman exec'); 2 + 2").value == "4"


def test_dependencies_build_and_install_under_podman(podman: Docker, session_name: str) -> None:
    with ContainerSession.start(session_name, dependencies=["six"], docker=podman) as s:
        assert s.execute("import six; six.PY3").value == "True"
        installed = s.install(["packaging"])
        assert installed.ok, installed
        assert s.execute("import packaging; bool(packaging.__version__)").value == "True"


def _codeexec(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CODEEXEC_DOCKER": PODMAN}
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=180, env=env)


def test_the_cli_starts_lists_runs_and_stops_a_podman_session(podman: Docker) -> None:
    name = unique_name()
    assert _codeexec("start", name).returncode == 0
    try:
        ran = _codeexec("exec", "-s", name, "y = 20\ny + 1")
        assert (ran.returncode, ran.stdout) == (0, "21\n"), ran.stderr
        listed = _codeexec("ls")
        assert listed.returncode == 0 and name in listed.stdout, listed
    finally:
        stopped = _codeexec("stop", name)
    assert stopped.returncode == 0, stopped.stderr
    assert name not in _codeexec("ls").stdout


def test_gc_removes_an_exited_podman_session(podman: Docker, session_name: str) -> None:
    made = _podman("run", "--ulimit", "nofile=1024:4096", "--ulimit", "nproc=4096:4096",
                   "--label", "codeexec.managed=1", "--label",
                   f"codeexec.session={session_name}", "--name", f"codeexec-{session_name}-x",
                   default_base_image(), "true")  # fmt: skip
    assert made.returncode == 0, made.stderr
    report = maintenance.gc(docker=podman)
    assert session_name in [c.name for c in report.containers]
    assert not _mine()
