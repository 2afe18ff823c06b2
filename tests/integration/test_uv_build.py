"""Dependencies install with uv when the base image has it, pip otherwise."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from codeexec import ContainerSession
from codeexec.docker import cache_volume_name
from codeexec.images import host_index_settings
from tests.conftest import RUN_ID, unique_name

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@contextmanager
def _base_of_this_run(name: str, ctx: Path, steps: str = "") -> Iterator[str]:
    """The offline base image plus ``steps``, as an image of this run only.

    Unique to the run, so no layer of an earlier build can stand in for the
    dependency install whose log the tests read.
    """
    tag = f"codeexec-test-{name}:{RUN_ID}"
    (ctx / "Dockerfile").write_text(
        f"FROM {os.environ['CODEEXEC_BASE_IMAGE']}\n{steps}ENV CODEEXEC_TEST_RUN={RUN_ID}\n"
    )
    subprocess.run(
        ["docker", "build", "--force-rm", "-q", "--label", "codeexec.test=1", "-t", tag, str(ctx)],
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    try:
        yield tag
    finally:
        # Its package cache volume (codeexec/images.py) goes with it.
        image_id = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
            capture_output=True, text=True, timeout=120,
        ).stdout.strip()  # fmt: skip
        subprocess.run(
            ["docker", "volume", "rm", cache_volume_name(image_id)],
            capture_output=True,
            timeout=120,
        )
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)


def _build_log(base: str, dependency: str) -> tuple[str, str | None]:
    """Start a session on ``base`` with ``dependency``: its build log and six's version."""
    lines: list[str] = []
    with ContainerSession.start(
        unique_name(), base_image=base, dependencies=[dependency], on_progress=lines.append
    ) as s:
        version = s.execute("import six; six.__version__").value
        env_image = s.info.image
    subprocess.run(["docker", "rmi", "-f", env_image], capture_output=True, timeout=120)
    return "\n".join(lines), version


@pytest.fixture(scope="module")
def uv_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The offline base image plus uv (installed with pip, trusting the host's CA)."""
    ctx = tmp_path_factory.mktemp("uvbase")
    ca = host_index_settings().ca_bundle
    cert = ""
    if ca is not None:
        (ctx / "ca.crt").write_bytes(ca.read_bytes())
        cert = "COPY ca.crt /tmp/ca.crt\nENV PIP_CERT=/tmp/ca.crt\n"
    steps = (
        f"{cert}RUN python3 -m venv /opt/uvtool && /opt/uvtool/bin/pip install -q uv "
        "&& ln -s /opt/uvtool/bin/uv /usr/local/bin/uv\n"
    )
    with _base_of_this_run("uvbase", ctx, steps) as tag:
        yield tag


def test_uv_installs_the_dependencies_when_the_base_has_it(uv_base: str) -> None:
    log, version = _build_log(uv_base, "six")
    assert version is not None
    # uv announces what it did ("Installed 1 package"); pip says "Successfully installed".
    assert "Installed 1 package" in log, log[-2000:]
    assert "Successfully installed" not in log


def test_pip_installs_them_otherwise(tmp_path: Path) -> None:
    with _base_of_this_run("pipbase", tmp_path) as base:
        log, version = _build_log(base, "six==1.16.0")
    assert version == "'1.16.0'"
    assert "Successfully installed six-1.16.0" in log, log[-2000:]
