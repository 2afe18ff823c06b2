"""The engine's flavour and runtimes, and the gVisor reaper: pure parts and argv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeexec._engineargs import (
    REAPER_SCRIPT,
    flavour_of,
    images_rows,
    is_gvisor,
    ps_label,
    reaper_argv,
    runsc_fix,
    runtime_names,
    started_id,
)
from codeexec.docker import Docker, RunSpec, classify, install_argv, run_argv
from codeexec.errors import ContainerStartError
from codeexec.models import Limits

FAKE = str(Path(__file__).with_name("fake_docker.py"))
ID = "0123456789abcdef" * 4


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("FAKE_DOCKER_STDIN", "1")
    return log


def _argvs(log: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


def test_reaper_argv_is_exact_runc_host_pids_and_only_the_kill_capability() -> None:
    assert reaper_argv("img:1", "codeexec-reaper-ab", [ID]) == [
        "run", "--rm", "--interactive", "--name", "codeexec-reaper-ab",
        "--label", "codeexec.reaper=1", "--runtime", "runc", "--pid", "host",
        "--network", "none", "--user", "0:0", "--cap-drop", "ALL", "--cap-add", "KILL",
        "--security-opt", "no-new-privileges", "--read-only", "--entrypoint", "python3",
        "img:1", "-c", REAPER_SCRIPT, ID,
    ]  # fmt: skip
    compile(REAPER_SCRIPT, "reaper", "exec")  # the script is valid Python


def test_runtime_names_reads_docker_info_and_tolerates_no_answer() -> None:
    answer = json.dumps(
        {"runc": {"path": "runc"}, "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["x"]}}
    )
    assert runtime_names(answer) == {"runc": "runc", "runsc": "/usr/bin/runsc"}
    assert runtime_names("") == {} and runtime_names("null") == {} and runtime_names("x") == {}


def test_is_gvisor_by_name_or_by_the_runtimes_path() -> None:
    assert is_gvisor("runsc") and is_gvisor("runsc-ckpt")
    assert not is_gvisor(None) and not is_gvisor("runc") and not is_gvisor("crun")
    assert is_gvisor("sandboxed", {"sandboxed": "/opt/gvisor/runsc"})


def test_started_id_is_the_64_hex_id_docker_run_printed_before_failing() -> None:
    assert started_id(f"{ID}\n") == ID
    assert started_id("") == "" and started_id("Error: no\n") == "" and started_id("f" * 12) == ""


def test_runsc_fix_names_the_package_the_daemon_json_lines_and_the_reload() -> None:
    fix = runsc_fix()
    assert "apt-get install runsc" in fix and '"runtimeArgs": ["--network=host"]' in fix
    assert "kill -HUP" in fix and "daemon.json" in fix


def test_flavour_of_version_answers() -> None:
    docker = {"Client": {"Version": "20.10.24"}, "Server": {"Components": [{"Name": "Engine"}]}}
    podman = {"Client": {"APIVersion": "4.3.1", "Version": "4.3.1", "GoVersion": "go1.19"}}
    assert flavour_of(docker) == "docker"
    assert flavour_of(podman) == "podman"


def test_a_failed_gvisor_start_removes_the_container_and_reaps_its_sandbox(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "run")
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_RUN", f"{ID}\n")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", "docker: Error response from daemon: OCI runtime\n")
    spec = RunSpec(image="img", container_name="c", labels={}, runtime="runsc")
    with pytest.raises(ContainerStartError):
        Docker(FAKE).run(spec, {})
    run, rm, reaper = _argvs(fake)
    assert run[0] == "run" and rm == ["rm", "--force", ID]
    assert reaper[:2] == ["run", "--rm"] and reaper[-1] == ID and "img" in reaper


def test_a_failed_runc_start_only_removes_the_container(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "run")
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_RUN", f"{ID}\n")
    spec = RunSpec(image="img", container_name="c", labels={})
    with pytest.raises(ContainerStartError):
        Docker(FAKE).run(spec, {})
    assert [a[0] for a in _argvs(fake)] == ["run", "rm"]


def test_reap_without_ids_lists_the_containers_and_skips_engines_without_gvisor(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_INFO", json.dumps({"runc": {"path": "runc"}}))
    assert Docker(FAKE).reap("img") == []
    assert _argvs(fake) == [["info", "--format", "{{json .Runtimes}}"]]
    fake.unlink()
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_INFO", json.dumps({"runsc": {"path": "/x/runsc"}}))
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_PS", f"{ID}\n")
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_RUN", "a" * 64 + "\n")
    assert Docker(FAKE).reap("img") == ["a" * 64]
    records = [json.loads(line) for line in fake.read_text().splitlines()]
    assert [r["argv"][0] for r in records] == ["info", "ps", "run"]
    assert records[2]["stdin"] == f"{ID}\n"  # the reaper spares every listed container


# -- podman -------------------------------------------------------------------------


def test_run_argv_for_podman_lowers_the_ulimits_and_chowns_the_workspace_with_u() -> None:
    spec = RunSpec(image="img", container_name="c", labels={}, limits=Limits(pids=100))
    docker, podman = run_argv(spec), run_argv(spec, "podman")
    at = docker.index("core=0") + 1
    assert podman[:at] == docker[:at]
    assert podman[at : at + 4] == ["--ulimit", "nofile=1024:4096", "--ulimit", "nproc=4096:4096"]
    rest = podman[at + 4 :]
    assert rest == [
        "/workspace:rw,exec,nosuid,nodev,size=512m,mode=0700,U" if a.startswith("/workspace:")
        else a for a in docker[at:]
    ]  # fmt: skip


def test_install_argv_for_podman_has_the_same_ulimits() -> None:
    docker = install_argv("img", "b", Limits())
    at = docker.index("core=0") + 1
    assert install_argv("img", "b", Limits(), flavour="podman") == [
        *docker[:at], "--ulimit", "nofile=1024:4096", "--ulimit", "nproc=4096:4096", *docker[at:]
    ]  # fmt: skip


def test_ps_label_and_images_rows_speak_each_flavours_templates() -> None:
    assert ps_label("codeexec.session", "docker") == '{{.Label "codeexec.session"}}'
    assert ps_label("codeexec.session", "podman") == '{{index .Labels "codeexec.session"}}'
    row = {"Repository": "r", "Tag": "t", "ID": "sha256:1", "CreatedAt": "c", "Size": "1MB"}
    assert images_rows(json.dumps(row) + "\n", "docker") == [row]
    assert images_rows("r\tt\tsha256:1\tc\t1MB\n", "podman") == [row]


def test_podman_says_image_not_known_where_docker_says_no_such_image(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "image")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", "Error: x:1: image not known\n")
    assert Docker(FAKE).image_id("x:1") is None
    err = classify(["podman", "run"], 125, "", "Error: x:1: image not known\n", "starting")
    assert "codeexec base-image" in err.message


def test_the_flavour_is_read_from_the_cli_not_asked_of_the_engine(tmp_path: Path) -> None:
    podman = tmp_path / "podman"
    podman.write_text("#!/bin/sh\nexit 0\n")
    wrapper = tmp_path / "docker"  # Debian's podman-docker: a script that runs podman
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/podman "$@"\n')
    for f in (podman, wrapper):
        f.chmod(0o755)
    assert Docker(str(podman)).flavour == "podman"
    assert Docker(str(wrapper)).flavour == "podman"
    assert Docker(FAKE).flavour == "docker"


def _run_reaper(shims: dict[int, tuple[str, str, str, float]], known: str, targets: list[str]):
    """Run REAPER_SCRIPT over a made-up /proc: pid -> (id, address, namespace, age s)."""
    import builtins
    import io
    import types

    uptime, tick = 10_000.0, 100
    files: dict[str, bytes] = {"/proc/uptime": f"{uptime} 1.0".encode()}
    for pid, (cid, address, namespace, age) in shims.items():
        argv = ["/usr/bin/containerd-shim-runc-v2", "-namespace", namespace, "-id", cid,
                "-address", address]  # fmt: skip
        files[f"/proc/{pid}/cmdline"] = "\0".join(argv).encode()
        start = int((uptime - age) * tick)
        files[f"/proc/{pid}/stat"] = f"{pid} (shim) S {' '.join(['0'] * 18)} {start} 0".encode()
    files["/proc/7/cmdline"] = b"runsc-sandbox\0--root=/x"  # not a shim
    files["/proc/7/stat"] = b"7 (runsc) S " + b"0 " * 20
    killed: list[int] = []
    fake_os = types.SimpleNamespace(
        listdir=lambda _: [*map(str, shims), "7", "self"],
        uname=lambda: types.SimpleNamespace(nodename="abcdefabcdef"),
        sysconf=lambda _: tick,
        kill=lambda pid, sig: killed.append(pid),
    )
    fake_sys = types.SimpleNamespace(stdin=io.StringIO(known), argv=["-c", *targets])

    def fake_open(path: str, mode: str = "r") -> io.IOBase:
        data = files[path]
        return io.BytesIO(data) if "b" in mode else io.StringIO(data.decode())

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        return {"os": fake_os, "sys": fake_sys}.get(name) or builtins.__import__(name)

    printed: list[str] = []
    env = {"__builtins__": {**vars(builtins), "open": fake_open, "__import__": fake_import,
                            "print": lambda *a: printed.append(" ".join(map(str, a)))}}  # fmt: skip
    exec(REAPER_SCRIPT, env)
    return sorted(killed), printed


def test_the_reaper_kills_only_its_engines_orphaned_shims() -> None:
    own, other = "/run/docker/containerd/containerd.sock", "/run/other/containerd.sock"
    gone, listed, young, plugin = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    shims = {
        10: ("abcdefabcdef" + "0" * 52, own, "moby", 1.0),  # the reaper's own shim
        11: (gone, own, "moby", 300.0),  # its container is gone: reaped
        12: (listed, own, "moby", 300.0),  # the engine lists it
        13: (young, own, "moby", 5.0),  # may belong to a container made since the list
        14: (plugin, own, "plugins.moby", 300.0),  # a docker plugin
        15: ("e" * 64, other, "moby", 300.0),  # another engine on the same host
    }
    assert _run_reaper(shims, f"{listed}\n", []) == ([11], [gone])
    # Named ids (a start that just failed) are reaped at once, whatever their age.
    assert _run_reaper(shims, "", [young]) == ([13], [young])
    assert _run_reaper(shims, "", ["e" * 64]) == ([], [])  # never another engine's
