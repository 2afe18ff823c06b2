"""Builds run untrusted code confined; the host's disk and the container's limits.

A package's build step (an in-tree PEP 517 backend, so pip needs no index) records
who it runs as and what bounds it; the probe's sdist sits in a base image made for
the test, installed as ``probe @ file:///pkgs/…`` (codeexec never forwards a host
``file://`` index, and nothing listens on a non-loopback address).
"""

from __future__ import annotations

import ast
import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from codeexec import ContainerSession, ImageBuildError
from codeexec.docker import LOG_MAX_FILES, LOG_MAX_SIZE, LOGS_MAX_BYTES, Docker
from codeexec.images import ensure_image, find_image
from tests.conftest import RUN_ID, unique_name
from tests.integration.test_uv_build import _base_of_this_run

pytestmark = pytest.mark.docker

MiB = 2**20
PROBE = "probe @ file:///pkgs/probe-0.1.tar.gz"
BROKEN = "broken @ file:///pkgs/broken-0.1.tar.gz"
# Unique to the run: other suites on this machine may well show the word "secret".
PASSWORD = f"secret{RUN_ID}x{secrets.token_hex(4)}"
SECRET_PROXY = f"http://user:{PASSWORD}@127.0.0.1:9/"

_BACKEND = """\
import base64, hashlib, json, os, sys, zipfile


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _facts():
    status = dict(
        line.split(":", 1) for line in (_read("/proc/self/status") or "").splitlines()
    )
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "cap_eff": status.get("CapEff", "").strip(),
        "cap_bnd": status.get("CapBnd", "").strip(),
        "no_new_privs": status.get("NoNewPrivs", "").strip(),
        "memory_limit": _read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        "pids_limit": _read("/sys/fs/cgroup/pids/pids.max"),
        "cpu_quota": _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
        "executor_writable": os.access("/opt/codeexec/codeexec_executor", os.W_OK),
        "https_proxy": os.environ.get("HTTPS_PROXY"),
    }


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = _read("PKG-INFO").split("Name: ")[1].split()[0]
    if name == "broken":
        sys.exit("the broken probe fails its build on purpose")
    facts = _facts()
    print("PROBE-FACTS " + json.dumps(facts), file=sys.stderr)
    files = {
        name + "/__init__.py": ("FACTS = %r\\n" % (facts,)).encode(),
        name + "-0.1.dist-info/METADATA": (
            "Metadata-Version: 2.1\\nName: %s\\nVersion: 0.1\\n" % name
        ).encode(),
        name + "-0.1.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\\nGenerator: probe\\nRoot-Is-Purelib: true\\n"
            b"Tag: py3-none-any\\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append("%s,sha256=%s,%d" % (path, digest.decode(), len(data)))
    record_path = name + "-0.1.dist-info/RECORD"
    files[record_path] = ("\\n".join(record + [record_path + ",,"]) + "\\n").encode()
    wheel = name + "-0.1-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel
"""


def _sdist(directory: Path, name: str) -> None:
    """An sdist whose build backend is in the tree and needs nothing from an index."""
    members = {
        "pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "probe_backend"\nbackend-path = ["."]\n'
        ),
        "probe_backend.py": _BACKEND,
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
    }
    with tarfile.open(directory / f"{name}-0.1.tar.gz", "w:gz") as tar:
        for rel, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-0.1/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def probe_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The offline base image plus the probe sdists in /pkgs (an image of this run only)."""
    ctx = tmp_path_factory.mktemp("probebase")
    _sdist(ctx, "probe")
    _sdist(ctx, "broken")
    steps = "COPY probe-0.1.tar.gz broken-0.1.tar.gz /pkgs/\n"
    with _base_of_this_run("probebase", ctx, steps) as tag:
        yield tag


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _recording_docker(tmp_path: Path) -> tuple[Path, Path]:
    """A docker CLI stand-in that records each argument list, then runs the real one."""
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "docker-recorder"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import json, os, shutil, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "os.execv(shutil.which('docker'), ['docker', *sys.argv[1:]])\n"
    )
    wrapper.chmod(0o755)
    return wrapper, log


class _CmdlineWatch:
    """Reads every process's command line (what `ps` shows) until stopped."""

    def __init__(self, needle: bytes) -> None:
        self.needle = needle
        self.seen: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = Path(entry.path, "cmdline").read_bytes()
                except OSError:
                    continue
                if self.needle in cmdline:
                    self.seen.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
            self.scans += 1
            self._stop.wait(0.02)


def _remove_image(tag: str) -> None:
    _docker("rmi", "-f", tag)


@dataclass
class ProbeBuild:
    facts: dict[str, Any]  # what the probe's build step saw
    argvs: list[list[str]]  # every docker command line codeexec ran
    watch: _CmdlineWatch  # command lines showing PASSWORD while it built
    image: str
    lines: list[str]


@pytest.fixture(scope="module")
def probe_build(probe_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbeBuild]:
    """A session whose image installs the probe, built with a proxy password in the env."""
    wrapper, argv_log = _recording_docker(tmp_path_factory.mktemp("recorder"))
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODEEXEC_DOCKER", str(wrapper))
        for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy"):
            mp.setenv(var, SECRET_PROXY)  # unused: the probe installs from a file
        with _CmdlineWatch(PASSWORD.encode()) as watch:
            session = ContainerSession.start(
                unique_name(),
                base_image=probe_base,
                dependencies=[PROBE],
                allow_urls=True,
                memory="700m",
                cpus=0.5,
                pids=99,
                on_progress=lines.append,
            )
        with session:
            facts = ast.literal_eval(session.execute("import probe; probe.FACTS").value or "{}")
            image = session.info.image
    argvs = [json.loads(line) for line in argv_log.read_text().splitlines()]
    try:
        yield ProbeBuild(facts, argvs, watch, image, lines)
    finally:
        _remove_image(image)


def test_package_build_code_runs_unprivileged_without_capabilities_within_limits(
    probe_build: ProbeBuild,
) -> None:
    facts = probe_build.facts
    assert facts["uid"] != 0 and facts["euid"] != 0, facts
    assert facts["cap_eff"] == "0000000000000000", facts
    assert facts["cap_bnd"] == "0000000000000000", facts  # --cap-drop ALL, not just non-root
    assert facts["no_new_privs"] == "1", facts
    assert facts["executor_writable"] is False, facts
    # The session's memory, CPU and process limits bound the build too.
    assert facts["memory_limit"] == str(700 * MiB), facts
    assert facts["pids_limit"] == "99", facts
    assert facts["cpu_quota"] == "50000", facts
    inspect = _docker("image", "inspect", "--format", "{{json .Config}}", probe_build.image)
    config = json.loads(inspect.stdout)  # the install run's user and command are not kept
    assert config["User"] == "10001:10001" and "install.sh" not in json.dumps(config["Cmd"])
    # The install ran as a container of its own, which is gone.
    assert any(a[0] == "run" and "--interactive" in a for a in probe_build.argvs)
    digest = probe_build.image.split(":")[1]
    assert _docker("ps", "-aq", "--filter", f"name=codeexec-build-{digest[:12]}").stdout == ""
    assert any(line.startswith("installing 1 dependencies") for line in probe_build.lines)


def test_proxy_credentials_are_on_no_command_line_and_in_no_image(
    probe_build: ProbeBuild,
) -> None:
    assert [a for a in probe_build.argvs if any(PASSWORD in arg for arg in a)] == []
    assert probe_build.watch.scans > 0 and probe_build.watch.seen == []
    config = _docker("image", "inspect", "--format", "{{json .Config}}", probe_build.image).stdout
    history = _docker("history", "--no-trunc", probe_build.image).stdout
    assert PASSWORD not in config and PASSWORD not in history
    # Yet the proxy reached the install, which needs it behind a proxy.
    assert probe_build.facts["https_proxy"] == SECRET_PROXY


def test_session_code_cannot_rewrite_the_installed_packages_even_with_a_writable_root(
    probe_base: str, probe_build: ProbeBuild, session_name: str
) -> None:
    # The build user owns the venv; the session user only reads it.
    with ContainerSession.start(
        session_name, base_image=probe_base, dependencies=[PROBE], allow_urls=True,
        read_only=False,
    ) as session:  # fmt: skip
        assert session.info.image == probe_build.image  # the image built above
        r = session.execute(
            "import os, probe, sysconfig\n"
            "site = sysconfig.get_paths()['purelib']\n"
            "denied = []\n"
            "for path in (os.path.join(site, 'evil.pth'), probe.__file__):\n"
            "    try:\n"
            "        open(path, 'a').close()\n"
            "    except PermissionError:\n"
            "        denied.append(path)\n"
            "(os.getuid(), len(denied))"
        )
    assert r.ok and r.value == "(10001, 2)", r


def _images_labelled(dependencies: list[str]) -> list[str]:
    """Ids of every image, intermediate ones included, made for ``dependencies``."""
    ids = _docker("images", "-aq", "--no-trunc", "--filter", "label=codeexec.deps").stdout
    found = []
    for image_id in set(ids.split()):
        fmt = '{{index .Config.Labels "codeexec.deps"}}'
        label = _docker("image", "inspect", "--format", fmt, image_id).stdout.strip()
        if label and json.loads(label) == dependencies:
            found.append(image_id)
    return found


def test_a_failed_build_leaves_no_container_and_no_image(
    probe_base: str, probe_build: ProbeBuild
) -> None:
    assert _images_labelled([PROBE]) != []  # it finds what is there
    docker = Docker()
    found = find_image(docker, base_image=probe_base, dependencies=[BROKEN])
    with pytest.raises(ImageBuildError) as caught:
        ensure_image(docker, base_image=probe_base, dependencies=[BROKEN])
    assert "the broken probe fails its build on purpose" in caught.value.log_tail
    name = f"codeexec-build-{found.context.digest[:12]}"
    assert _docker("ps", "-aq", "--filter", f"name={name}").stdout == ""
    assert not docker.image_exists(found.tag)
    # Not even the trusted stage: no image of any kind carries these dependencies' label.
    assert _images_labelled(list(found.dependencies)) == []


def _pem_blocks(path: str, count: int) -> str:
    text = Path(path).read_text()
    blocks = text.split("-----END CERTIFICATE-----")[:count]
    return "".join(b[b.index("-----BEGIN") :] + "-----END CERTIFICATE-----\n" for b in blocks)


def test_only_certificate_blocks_of_the_ca_bundle_enter_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = _pem_blocks("/etc/ssl/certs/ca-certificates.crt", 2)
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(
        f"# run {RUN_ID}\nPROXY_PASSWORD=hunter2\n"
        + certs
        + "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"
    )
    monkeypatch.setenv("CODEEXEC_CA_BUNDLE", str(bundle))
    tag = ensure_image(Docker(), base_image=None, dependencies=[])
    try:
        inside = _docker(
            "run", "--rm", "--network", "none", "--entrypoint", "cat", tag,
            "/opt/codeexec/trust/ca-bundle.crt",
        )  # fmt: skip
        assert inside.returncode == 0, inside.stderr
        assert inside.stdout == certs
        assert "hunter2" not in inside.stdout and "PRIVATE KEY" not in inside.stdout
    finally:
        _remove_image(tag)


_FLOOD = """
import os
chunk = (b"x" * 1023 + b"\\n") * 64
written, refused = 0, []
for path in ("/proc/1/fd/1", "/proc/1/fd/2"):
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        refused.append(f"{path}: {exc}")
        continue
    try:
        while written < 50 * 2**20:
            written += os.write(fd, chunk)
    finally:
        os.close(fd)
    break
(written, refused)
"""


def _size(text: str) -> int:
    number, unit = int(text[:-1]), text[-1].lower()
    return number * {"k": 2**10, "m": 2**20, "g": 2**30}[unit]


def test_code_cannot_fill_the_hosts_disk_through_the_docker_log(session_name: str) -> None:
    cap = _size(LOG_MAX_SIZE)
    with ContainerSession.start(session_name) as session:
        result = session.execute(_FLOOD, timeout=300)
        assert result.ok, result
        written, refused = ast.literal_eval(result.value or "(0, [])")
        data = json.loads(_docker("container", "inspect", session.container_id).stdout)[0]
        log_path = Path(data["LogPath"])
        # The engine writes the log behind the code: watch it until it stops growing.
        sizes: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            files = list(log_path.parent.glob(log_path.name + "*"))
            sizes.append(sum(f.stat().st_size for f in files))
            assert log_path.stat().st_size <= cap + 64 * 1024
            assert sizes[-1] <= LOG_MAX_FILES * (cap + 64 * 1024), sizes
            if len(sizes) > 3 and sizes[-1] == sizes[-4]:
                break
            time.sleep(0.25)
        # Reached the log (or could not reach it at all: then nothing can flood it).
        assert written == 50 * MiB or len(refused) == 2, (written, refused)
        tail = session.logs(tail=None)
        assert len(tail) <= LOGS_MAX_BYTES + 200
        log_config = data["HostConfig"]["LogConfig"]
        assert log_config["Type"] == "json-file"
        assert log_config["Config"] == {"max-size": LOG_MAX_SIZE, "max-file": str(LOG_MAX_FILES)}


_CORE = """
import os, resource, subprocess, sys

def try_to_allow_cores():
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)
    except (ValueError, OSError):
        pass  # refused: the hard limit is 0

crash = subprocess.run(
    [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"],
    preexec_fn=try_to_allow_cores, cwd="/workspace",
)
cores = [n for d in ("/workspace", "/tmp") for n in os.listdir(d) if n.startswith("core")]
(resource.getrlimit(resource.RLIMIT_CORE), crash.returncode, cores)
"""


def test_core_dumps_are_off_and_cannot_be_turned_on(session_name: str) -> None:
    with ContainerSession.start(session_name) as session:
        result = session.execute(_CORE, timeout=120)
    assert result.ok, result
    limit, returncode, cores = ast.literal_eval(result.value or "()")
    assert returncode == -11  # the child really crashed
    assert cores == []
    assert limit == (0, 0)
