"""docker.py: argument lists, error mapping and the subprocess seam (no engine needed)."""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from codeexec._dockerargs import executor_command, session_run_spec
from codeexec.docker import (
    DESCRIPTOR_HEADROOM,
    Docker,
    RunSpec,
    build_argv,
    build_error,
    classify,
    commit_argv,
    commit_changes,
    install_argv,
    published_port,
    relay_argv,
    run_argv,
)
from codeexec.errors import (
    ContainerStartError,
    DockerError,
    DockerNotAvailable,
    ImageBuildError,
    NoSuchSession,
    register_secret,
)
from codeexec.models import Limits
from codeexec.options import SessionOptions

FAKE = str(Path(__file__).with_name("fake_docker.py"))


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    return log


def _calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_run_argv_has_every_secure_default() -> None:
    spec = RunSpec(
        image="codeexec-env:abc",
        container_name="codeexec-x-1a2b3c",
        labels={"codeexec.session": "x", "codeexec.managed": "1"},
        env={"CODEEXEC_IDLE_TIMEOUT": "60.0"},
        secret_env=("CODEEXEC_TOKEN",),
        limits=Limits(memory="2g", cpus=2.0, pids=100),
    )
    assert run_argv(spec) == [
        "run",
        "--detach",
        "--rm",
        "--name",
        "codeexec-x-1a2b3c",
        "--label",
        "codeexec.managed=1",
        "--label",
        "codeexec.session=x",
        "--user",
        "10001:10001",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--memory",
        "2g",
        "--memory-swap",
        "2g",
        "--cpus",
        "2.0",
        "--pids-limit",
        "100",
        "--ulimit",
        "core=0",
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=5m",
        "--log-opt",
        "max-file=2",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,exec,nosuid,nodev,size=512m,mode=1777",
        "--tmpfs",
        "/workspace:rw,exec,nosuid,nodev,size=512m,uid=10001,gid=10001,mode=0700",
        "--workdir",
        "/workspace",
        "--network",
        "bridge",
        "--publish",
        "127.0.0.1::8888",
        "--env",
        "CODEEXEC_IDLE_TIMEOUT=60.0",
        "--env",
        "CODEEXEC_TOKEN",
        "codeexec-env:abc",
        "python",
        "-s",
        "/opt/codeexec/codeexec_executor/__main__.py",
        "serve",
    ]


def test_relay_argv_blanks_the_token_in_the_exec_environment() -> None:
    assert relay_argv("c1", executor_command("relay")) == [
        "exec",
        "-i",
        "--env",
        "CODEEXEC_TOKEN=",
        "c1",
        "python",
        "-s",
        "/opt/codeexec/codeexec_executor/__main__.py",
        "relay",
    ]


def test_session_run_spec_carries_the_max_lifetime_as_env_and_label() -> None:
    spec = session_run_spec(
        SessionOptions(idle_timeout=60, max_lifetime=7200), image="i", name="s",
        created="2026-01-01T00:00:00+00:00", suffix="abc123",
    )  # fmt: skip
    assert spec.env == {"CODEEXEC_IDLE_TIMEOUT": "60.0", "CODEEXEC_MAX_LIFETIME": "7200.0"}
    assert spec.labels["codeexec.max_lifetime"] == "7200.0"
    unlimited = session_run_spec(
        SessionOptions(idle_timeout=None, max_lifetime=None), image="i", name="s", created="",
        suffix="abc123",
    )  # fmt: skip
    assert unlimited.env["CODEEXEC_MAX_LIFETIME"] == "0.0"


def test_run_argv_network_none_publishes_nothing_and_runtime_is_passed() -> None:
    spec = RunSpec(
        image="i", container_name="c", labels={}, network="none", runtime="runsc", read_only=False
    )
    argv = run_argv(spec)
    assert "--publish" not in argv and "--read-only" not in argv
    assert argv[argv.index("--network") + 1] == "none"
    assert argv[argv.index("--runtime") + 1] == "runsc"


@pytest.mark.parametrize("scope", [None, "mcp-0123abcd"])
def test_session_run_spec_labels_the_scope(scope: str | None) -> None:
    spec = session_run_spec(
        SessionOptions(idle_timeout=60, scope=scope), image="codeexec-env:abc", name="x",
        created="now", suffix="1a2b3c",
    )  # fmt: skip
    labels = [v for k, v in zip(run_argv(spec), run_argv(spec)[1:], strict=False) if k == "--label"]
    assert [label for label in labels if label.startswith("codeexec.scope")] == (
        [] if scope is None else [f"codeexec.scope={scope}"]
    )


def test_build_argv_forces_rm_has_no_network_and_no_build_args() -> None:
    assert build_argv("/ctx", "codeexec-env:1", {"codeexec.image": "1"}, "/tmp/iid") == [
        "build",
        "--force-rm",
        "--network",
        "none",
        "--iidfile",
        "/tmp/iid",
        "--tag",
        "codeexec-env:1",
        "--label",
        "codeexec.image=1",
        "/ctx",
    ]
    assert "--tag" not in build_argv("/ctx", None, {}, "/tmp/iid")


def test_install_argv_confines_the_build_like_a_session() -> None:
    limits = Limits(memory="768m", cpus=0.5, pids=64, tmp_size="100m")
    assert install_argv("sha256:abc", "codeexec-build-1", limits, runtime="runsc") == [
        "run",
        "--interactive",
        "--name",
        "codeexec-build-1",
        "--user",
        "10002:10002",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--memory",
        "768m",
        "--memory-swap",
        "768m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "64",
        "--ulimit",
        "core=0",
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=5m",
        "--log-opt",
        "max-file=2",
        "--tmpfs",
        "/tmp:rw,exec,nosuid,nodev,size=100m,mode=1777",
        "--network",
        "bridge",
        "--runtime",
        "runsc",
        "sha256:abc",
        "sh",
        "/opt/codeexec/build/install.sh",
    ]


def test_commit_gives_back_the_stage_images_user_workdir_and_command() -> None:
    config = {"User": "10001:10001", "WorkingDir": "/workspace", "Cmd": ["python", "-m", "x"]}
    assert commit_argv("c1", "codeexec-env:1", commit_changes(config)) == [
        "commit",
        "--change",
        "USER 10001:10001",
        "--change",
        "WORKDIR /workspace",
        "--change",
        'CMD ["python", "-m", "x"]',
        "c1",
        "codeexec-env:1",
    ]


@pytest.mark.parametrize(
    ("stderr", "cls", "hint"),
    [
        (
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
            "daemon running?",
            DockerNotAvailable,
            "DOCKER_HOST",
        ),
        (
            "permission denied while trying to connect to the Docker daemon socket",
            DockerNotAvailable,
            "docker` group",
        ),
        ("Error: No such container: codeexec-x", NoSuchSession, "codeexec start"),
        ("Error response from daemon: No such object: abc", NoSuchSession, "codeexec start"),
        (
            "Unable to find image 'python:3.12-slim' locally\ndocker: Error response from daemon: "
            "pull access denied for python",
            DockerError,
            "CODEEXEC_BASE_IMAGE",
        ),
        ("something odd", DockerError, "something odd"),
        (  # docker 28 ends every `docker run` error with a usage trailer: the reason is above
            "docker: Error response from daemon: Unknown runtime specified nosuch\n\n"
            "Run 'docker run --help' for more information\n",
            DockerError,
            "Unknown runtime specified nosuch — the Docker engine has no runtime",
        ),
        (
            "docker: Error response from daemon: network nosuchnet not found\n\n"
            "Run 'docker run --help' for more information",
            DockerError,
            "network nosuchnet not found — no such Docker network (--network",
        ),
        (
            'invalid argument "banana" for "-m, --memory" flag: invalid size: \'banana\'\n'
            "\nUsage:  docker run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n"
            "Run 'docker run --help' for more information",
            DockerError,
            'doing x failed: invalid argument "banana" for "-m, --memory" flag',
        ),
        ("\nRun 'docker run --help' for more information\n", DockerError, "Run 'docker run"),
    ],
)
def test_classify_recorded_stderr(stderr: str, cls: type[DockerError], hint: str) -> None:
    err = classify(["docker", "x"], 1, "", stderr, "doing x")
    assert type(err) is cls
    assert hint in str(err)
    assert err.returncode == 1 and err.stderr == stderr


def test_missing_binary_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEEXEC_DOCKER", "/nonexistent/docker")
    with pytest.raises(DockerNotAvailable, match="CODEEXEC_DOCKER"):
        Docker().version()


def test_token_travels_in_env_never_in_argv(fake: Path) -> None:
    token = "s3cret-token-value-0123456789"
    spec = RunSpec(image="i", container_name="c", labels={}, secret_env=("CODEEXEC_TOKEN",))
    Docker(FAKE).run(spec, {"CODEEXEC_TOKEN": token})
    (call,) = _calls(fake)
    assert token not in json.dumps(call["argv"])
    assert call["token"] == token


def test_errors_never_show_the_token(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "another-secret-token-abcdef"
    register_secret(token)
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "run")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", f"Error: bad env CODEEXEC_TOKEN={token}\n")
    spec = RunSpec(image="i", container_name="c", labels={})
    with pytest.raises(ContainerStartError) as info:
        Docker(FAKE).run(spec, {"CODEEXEC_TOKEN": token})
    err = info.value
    for text in (str(err), repr(err), err.stderr, " ".join(err.argv)):
        assert token not in text


def test_rm_ignores_missing_containers(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "rm")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", "Error: No such container: abc\n")
    Docker(FAKE).rm("abc")
    assert _calls(fake)[0]["argv"] == ["rm", "--force", "abc"]


def test_timeout_is_a_clear_error(tmp_path: Path) -> None:
    slow = tmp_path / "slow-docker"
    slow.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(5)\n")
    slow.chmod(0o755)
    with pytest.raises(DockerError, match="did not finish"):
        Docker(str(slow))._run(["ps"], timeout=0.3)


def test_engine_down_maps_to_docker_not_available(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "version")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", "error during connect: dial unix: no such file\n")
    with pytest.raises(DockerNotAvailable, match="DOCKER_HOST"):
        Docker(FAKE).version()


def test_published_port_from_recorded_inspect() -> None:
    data = json.loads(Path(__file__).with_name("fixtures").joinpath("inspect.json").read_text())
    assert published_port(data[0]) == ("127.0.0.1", 49153)


def test_ps_reads_labels_from_inspect(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixture = Path(__file__).with_name("fixtures").joinpath("inspect.json").read_text()
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_PS", "abc\n")
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_CONTAINER", fixture)
    (info,) = Docker(FAKE).ps({"codeexec.managed": "1"})
    assert info.name == "analysis"
    assert info.dependencies == ("numpy==2.*", "pandas<3,>=2")
    assert info.network == "bridge" and info.status == "running"
    assert _calls(fake)[0]["argv"] == [
        "ps",
        "--quiet",
        "--no-trunc",
        "--all",
        "--filter",
        "label=codeexec.managed=1",
    ]


def test_env_var_selects_binary(monkeypatch: pytest.MonkeyPatch, fake: Path) -> None:
    monkeypatch.setenv("CODEEXEC_DOCKER", FAKE)
    assert Docker().version() == "20.10.24"
    assert os.path.exists(fake)


def test_build_lines_reach_the_caller_without_ansi_colours(
    fake: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        "FAKE_DOCKER_STDOUT_BUILD", "Step 1/2 : RUN x\n\x1b[0m\x1b[91mInstalled \x1b[0m1 package\n"
    )
    lines: list[str] = []
    monkeypatch.setenv("FAKE_DOCKER_IIDFILE", "sha256:" + "e" * 64)
    image_id = Docker(FAKE).build(str(tmp_path), "t:1", labels={}, timeout=30, on_line=lines.append)
    assert lines == ["Step 1/2 : RUN x", "Installed 1 package"]
    assert image_id == "sha256:" + "e" * 64


def test_logs_keep_only_the_end_of_a_huge_log(fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_LOGS", "".join(f"line {i}\n" for i in range(9_000)))
    text = Docker(FAKE).logs("c1", tail=None, max_bytes=1000)
    assert len(text) < 1100
    assert text.startswith("[codeexec: ") and "earlier lines dropped" in text
    assert text.endswith("line 8999\n")
    assert _calls(fake)[0]["argv"] == ["logs", "c1"]
    assert Docker(FAKE).logs("c1").endswith("line 8999\n")
    assert _calls(fake)[1]["argv"] == ["logs", "--tail", "200", "c1"]


def test_an_install_whose_packages_say_connection_refused_is_a_build_error() -> None:
    pip_says = ["ERROR: Could not install packages: [Errno 111] Connection refused"]
    err = build_error(["docker", "run"], 1, pip_says, False, 60, Limits())
    assert isinstance(err, ImageBuildError) and "Connection refused" in err.log_tail
    killed = build_error(["docker", "run"], 137, ["Collecting torch"], False, 60, Limits())
    assert "killed (exit 137)" in killed.message and "1g memory limit" in killed.message
    engine = ["docker: Cannot connect to the Docker daemon at unix:///var/run/docker.sock."]
    assert isinstance(
        build_error(["docker", "run"], 125, engine, False, 60, Limits()), DockerNotAvailable
    )


@contextmanager
def _descriptors_left(free: int) -> Iterator[None]:
    """This process's soft descriptor limit lowered to ``free`` above those open now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc (Linux)")
def test_out_of_descriptors_is_named_not_an_engine_that_is_missing(fake: Path) -> None:
    # A process holding many sessions hits its descriptor limit in a docker call
    # first (the pipes of `docker run`): that is not "Docker is not available".
    with _descriptors_left(2), pytest.raises(DockerError) as info:
        Docker(FAKE)._run(["ps"])
    assert not isinstance(info.value, DockerNotAvailable)
    assert "file descriptors open" in str(info.value)
    assert "ulimit -n" in str(info.value)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc (Linux)")
def test_start_refuses_without_descriptor_headroom_before_any_docker_call(fake: Path) -> None:
    from codeexec import ContainerSession

    with _descriptors_left(DESCRIPTOR_HEADROOM - 8), pytest.raises(DockerError) as info:
        ContainerSession.start("fd-headroom", docker=Docker(FAKE))
    assert not isinstance(info.value, DockerNotAvailable)
    assert "Close the sessions it no longer uses" in str(info.value)
    assert not fake.exists() or _calls(fake) == []  # no docker call was made
