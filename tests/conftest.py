"""Shared fixtures: the Docker engine, unique session names, and the leak check."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

# No registry is reachable in CI: sessions build on the offline base image
# (executor_image/make_base_image.sh), unless the caller chose another.
os.environ.setdefault("CODEEXEC_BASE_IMAGE", "codeexec-base:bookworm")
# The session address cache (codeexec/_addrcache.py) of this run lives apart from the
# user's, and every subprocess a test starts inherits it.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="codeexec-test-cache-")

RUN_ID = secrets.token_hex(3)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-docker",
        action="store_true",
        help="fail, instead of skipping, Docker tests when no engine answers",
    )


def _docker_ok() -> str | None:
    binary = os.environ.get("CODEEXEC_DOCKER", "docker")
    if shutil.which(binary) is None:
        return f"{binary} not on PATH"
    try:
        proc = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if proc.returncode == 0 else proc.stderr.strip()[-300:]


@pytest.fixture(scope="session")
def docker_engine(request: pytest.FixtureRequest) -> None:
    problem = _docker_ok()
    if problem is None:
        return
    if request.config.getoption("--require-docker") or os.environ.get("CI") == "true":
        pytest.fail(f"Docker engine required but not available: {problem}")
    pytest.skip(f"no Docker engine: {problem}")


def require(request: pytest.FixtureRequest, problem: str) -> None:
    """An engine feature a test needs is missing: fail like ``docker_engine`` (skip
    only outside CI and without --require-docker)."""
    if request.config.getoption("--require-docker") or os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "docker" in item.keywords:
            item.fixturenames.insert(0, "docker_engine")
            item.fixturenames.insert(1, "no_leaked_containers")


def _session_containers(prefix: str, names: Iterable[str] = ()) -> set[str]:
    """Ids of codeexec containers whose session name starts with ``prefix`` (or is in ``names``)."""
    binary = os.environ.get("CODEEXEC_DOCKER", "docker")
    out = subprocess.run(
        [
            binary,
            "ps",
            "-a",
            "--filter",
            "label=codeexec.managed=1",
            "--format",
            '{{.ID}} {{.Label "codeexec.session"}}',
        ],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    wanted = set(names)
    rows = [line.split() for line in out.splitlines() if len(line.split()) == 2]
    return {
        cid
        for cid, session in rows
        if (session in wanted if wanted else session.startswith(prefix))
    }


@pytest.fixture
def no_leaked_containers(docker_engine: None) -> Iterator[None]:
    """Fails the test if it leaves a container of this test run behind."""
    yield
    left = _session_containers(f"t{RUN_ID}")
    if left:
        binary = os.environ.get("CODEEXEC_DOCKER", "docker")
        subprocess.run([binary, "rm", "-f", *left], capture_output=True, timeout=60)
        pytest.fail(f"test left {len(left)} container(s) behind: {sorted(left)}")


_counter = iter(range(1_000_000))


@pytest.fixture
def session_name() -> str:
    """A session name unique to this test run (the leak check looks for its prefix)."""
    return f"t{RUN_ID}-{next(_counter)}"


def unique_name() -> str:
    return f"t{RUN_ID}-{next(_counter)}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing of this run may survive it (module-scoped sessions included)."""
    if _docker_ok() is not None:
        return
    left = _session_containers(f"t{RUN_ID}") | _session_containers(f"m{RUN_ID}")
    if left:
        binary = os.environ.get("CODEEXEC_DOCKER", "docker")
        subprocess.run([binary, "rm", "-f", *left], capture_output=True, timeout=60)
        print(f"\nERROR: the test run left {len(left)} container(s) behind: {sorted(left)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def local_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No Docker: tests/fake_docker.py as the CLI, running the real executor locally.

    Yields the fake engine's state directory (tests/fake_engine.py); every executor
    it started is killed afterwards. Its calls are logged to ``calls.jsonl`` beside it.
    """
    from tests import fake_engine

    state = tmp_path / "engine"
    monkeypatch.setenv("CODEEXEC_DOCKER", str(Path(__file__).with_name("fake_docker.py")))
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(state))
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CODEEXEC_SESSION_CACHE", raising=False)
    yield state
    fake_engine.remove_all(state)


@pytest.fixture(autouse=True)
def _fresh_engine_places() -> Iterator[None]:
    """What this process learnt of where each engine is (codeexec/_locality.py) does
    not leak from one test into the next."""
    from codeexec import _locality

    _locality.forget()
    yield
    _locality.forget()
