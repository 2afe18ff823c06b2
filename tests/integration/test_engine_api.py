"""The engine API against the real engine: the same answers as the docker CLI, the
warm pool's claim without a CLI call, and the CLI wherever the API is not certainly
the CLI's engine (codeexec/_engineapi.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from codeexec import ContainerSession
from codeexec.docker import Docker
from codeexec.errors import DockerError, DockerNotAvailable, NoSuchSession
from codeexec.pool import WarmPool
from tests.conftest import require

pytestmark = pytest.mark.docker

DOCKER = os.environ.get("CODEEXEC_DOCKER", "docker")


def _docker(*args: str) -> str:
    proc = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture
def api(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Docker:
    """The environment's engine, where codeexec speaks its API."""
    monkeypatch.delenv("CODEEXEC_ENGINE_API", raising=False)
    docker = Docker()
    if docker._api_socket() is None:
        require(request, "the engine API is not used here (not a native docker CLI on a socket)")
    return docker


@pytest.fixture
def cli_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every docker CLI call codeexec makes during the test (its arguments)."""
    calls: list[list[str]] = []
    real = Docker._run

    def spy(self: Docker, args: Any, **kwargs: Any) -> Any:
        calls.append(list(args))
        return real(self, args, **kwargs)

    monkeypatch.setattr(Docker, "_run", spy)
    return calls


@pytest.fixture
def marker(session_name: str) -> Iterator[Callable[[str], str]]:
    """Creates never-started containers labelled as session ``session_name``'s."""
    made: list[str] = []
    env = dict(os.environ)  # the engine's, whatever the test points DOCKER_HOST at

    def create(suffix: str) -> str:
        name = f"codeexec-{session_name}-{suffix}"
        _docker(
            "create", "--name", name, "--label", "codeexec.managed=1",
            "--label", f"codeexec.session={session_name}", "--network", "none",
            "--entrypoint", "true", os.environ["CODEEXEC_BASE_IMAGE"],
        )  # fmt: skip
        made.append(_docker("container", "inspect", "--format", "{{.Id}}", name))
        return made[-1]

    yield create
    if made:
        subprocess.run([DOCKER, "rm", "-f", *made], capture_output=True, timeout=60, env=env)


def _cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEEXEC_ENGINE_API", "0")


def test_the_api_and_the_cli_find_the_same_containers(
    api: Docker, marker: Callable[[str], str], session_name: str,
    cli_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    made = {marker("a"), marker("b")}
    labels = {"codeexec.session": session_name}
    by_api = api.session_candidates(session_name, all=True)
    running_by_api = api.session_candidates(session_name)
    refs_by_api = api.ps_inspect(labels), api.find_session(session_name, all=True)
    assert cli_calls == []  # the API answered
    _cli(monkeypatch)
    by_cli = api.session_candidates(session_name, all=True)
    running_by_cli = api.session_candidates(session_name)
    refs_by_cli = api.ps_inspect(labels), api.find_session(session_name, all=True)
    assert [c[0] for c in cli_calls] == ["ps", "ps", "ps", "container", "ps", "container"]
    assert set(by_api) == made and by_api == by_cli
    assert running_by_api == running_by_cli == []  # never started
    assert refs_by_api == refs_by_cli  # SessionRefs from the same JSON, field by field
    assert {r.id for r in refs_by_api[0]} == {r.id for r in refs_by_api[1]} == made


def test_a_rename_and_its_errors_are_the_same_through_the_api(
    api: Docker, marker: Callable[[str], str], session_name: str,
    cli_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    a, b = marker("a"), marker("b")
    api.rename(a, f"codeexec-{session_name}-renamed")
    assert _docker("container", "inspect", "--format", "{{.Name}}", a) == (
        f"/codeexec-{session_name}-renamed"
    )
    errors: dict[str, list[DockerError]] = {"api": [], "cli": []}
    for way in ("api", "cli"):
        if way == "cli":
            assert cli_calls == []  # everything above went through the API
            _cli(monkeypatch)
        # b's name is taken (by b); no container is called gone-…
        for target, new_name in [(a, f"codeexec-{session_name}-b"), (f"gone-{b}", "x")]:
            with pytest.raises(DockerError) as raised:
                api.rename(target, new_name)
            errors[way].append(raised.value)
    assert [c[0] for c in cli_calls] == ["rename", "rename"]
    for by_api, by_cli in zip(errors["api"], errors["cli"], strict=True):
        assert type(by_api) is type(by_cli)
        assert by_api.argv == by_cli.argv
        said = by_api.stderr.removeprefix("Error response from daemon: ").strip()
        assert said and said in by_cli.stderr  # the engine's own words, both ways
    conflict, gone = errors["api"]
    assert "already in use" in conflict.stderr and not isinstance(conflict, NoSuchSession)
    assert isinstance(gone, NoSuchSession)


def test_a_warm_pool_claim_makes_no_docker_cli_call(
    api: Docker, session_name: str, cli_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with WarmPool(size=1, idle_timeout=120) as pool:
        assert pool.wait_ready(timeout=120)
        cli_calls.clear()
        session = ContainerSession.start(session_name, pool=pool)
        try:
            claimed = [c for c in cli_calls if c[0] in ("ps", "rename")]
            assert session.created and claimed == []
            assert _docker("container", "inspect", "--format", "{{.Name}}", session.container_id) \
                .startswith(f"/codeexec-{session_name}-")  # fmt: skip
            assert session.execute("6 * 7").value == "42"
            found = api.find_session(session_name)
            _cli(monkeypatch)
            assert api.find_session(session_name) == found  # every field of the running one
            assert [r.id for r in found] == [session.container_id] and found[0].running
        finally:
            session.stop()


def test_a_docker_context_or_a_tcp_host_makes_codeexec_ask_the_cli(
    api: Docker, marker: Callable[[str], str], session_name: str, tmp_path: Path,
    cli_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    made = marker("a")
    # A context of the CLI's own that names the very same socket: still the CLI's call.
    config = str(tmp_path / "docker-config")
    socket_path = api._api_socket()
    _docker(
        "--config", config, "context", "create", "same", "--docker", f"host=unix://{socket_path}"
    )
    _docker("--config", config, "context", "use", "same")
    monkeypatch.setenv("DOCKER_CONFIG", config)
    in_context = Docker()
    assert in_context._api_socket() is None
    assert in_context.session_candidates(session_name, all=True) == [made]
    assert [c[0] for c in cli_calls] == ["ps"]
    # A TCP engine: only ever the CLI's (here nothing listens, and the CLI says so,
    # though the local socket would have answered).
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    tcp = Docker()
    assert tcp._api_socket() is None
    with pytest.raises(DockerNotAvailable):
        tcp.session_candidates(session_name, all=True)
    assert [c[0] for c in cli_calls] == ["ps", "ps"]


def test_an_image_lookup_is_the_same_both_ways(
    api: Docker, session_name: str, cli_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = [os.environ["CODEEXEC_BASE_IMAGE"], f"codeexec-missing-{session_name}:none"]
    by_api = [api.image_id(ref) for ref in refs]
    assert cli_calls == []
    _cli(monkeypatch)
    assert [api.image_id(ref) for ref in refs] == by_api
    assert by_api[0] and by_api[0].startswith("sha256:") and by_api[1] is None
    assert [c[:2] for c in cli_calls] == [["image", "inspect"]] * 2
