"""Dependencies install with uv when the base image has it, pip otherwise."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import ContainerSession
from codeexec.images import host_index_settings
from tests.conftest import RUN_ID, unique_name

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def uv_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The offline base image plus uv (installed with pip, trusting the host's CA)."""
    tag = f"codeexec-test-uvbase:{RUN_ID}"
    ctx = tmp_path_factory.mktemp("uvbase")
    ca = host_index_settings().ca_bundle
    cert = ""
    if ca is not None:
        (ctx / "ca.crt").write_bytes(ca.read_bytes())
        cert = "COPY ca.crt /tmp/ca.crt\nENV PIP_CERT=/tmp/ca.crt\n"
    (ctx / "Dockerfile").write_text(
        f"FROM {os.environ['CODEEXEC_BASE_IMAGE']}\n{cert}"
        "RUN python3 -m venv /opt/uvtool && /opt/uvtool/bin/pip install -q uv "
        "&& ln -s /opt/uvtool/bin/uv /usr/local/bin/uv\n"
        # A base of this run only: no layer of an earlier build can stand in for
        # the dependency install whose log the test reads.
        f"ENV CODEEXEC_TEST_RUN={RUN_ID}\n"
    )
    subprocess.run(
        ["docker", "build", "--force-rm", "-q", "--label", "codeexec.test=1", "-t", tag, str(ctx)],
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)


def test_uv_installs_the_dependencies_when_the_base_has_it(uv_base: str) -> None:
    lines: list[str] = []
    with ContainerSession.start(
        unique_name(), base_image=uv_base, dependencies=["six"], on_progress=lines.append
    ) as s:
        assert s.execute("import six; six.__version__").status == "ok"
        tag = s.info.image
    log = "\n".join(lines)
    # uv announces what it did ("Installed 1 package"); pip says "Successfully installed".
    assert "Installed 1 package" in log, log[-2000:]
    assert "Successfully installed" not in log
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)


def test_pip_installs_them_otherwise(tmp_path: Path) -> None:
    tag = f"codeexec-test-pipbase:{RUN_ID}"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {os.environ['CODEEXEC_BASE_IMAGE']}\nENV CODEEXEC_TEST_RUN={RUN_ID}\n"
    )
    subprocess.run(
        ["docker", "build", "-q", "--label", "codeexec.test=1", "-t", tag, str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    lines: list[str] = []
    try:
        with ContainerSession.start(
            unique_name(), base_image=tag, dependencies=["six==1.16.0"], on_progress=lines.append
        ) as s:
            assert s.execute("import six; six.__version__").value == "'1.16.0'"
            env_image = s.info.image
        log = "\n".join(lines)
        assert "Successfully installed six-1.16.0" in log, log[-2000:]
        subprocess.run(["docker", "rmi", "-f", env_image], capture_output=True, timeout=120)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)
