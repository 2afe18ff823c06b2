"""An installed wheel, not only the checkout, must build images and run code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import unique_name

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_installed_wheel_builds_an_image_and_runs_code(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("codeexec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "codeexec/_executor_image/codeexec_executor/server.py" in names
    assert "codeexec/_executor_image/Dockerfile.template" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel), "packaging"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    name = unique_name()
    code = (
        "import codeexec, pathlib\n"
        "assert '_executor_image' in str(codeexec.images.executor_source_dir())\n"
        f"with codeexec.ContainerSession.start({name!r}) as s:\n"
        "    print(s.execute('6 * 7').value)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [str(py), "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"


def test_a_pip_user_makes_the_base_image_and_runs_code_on_it(tmp_path: Path) -> None:
    """From an installed wheel (with its dependencies), no checkout: `codeexec base-image`
    runs the script shipped in the wheel (real debootstrap, real `docker import`), and
    a session built on that image runs code through the installed command."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("codeexec-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    name = unique_name()
    tag = f"codeexec-test-base-{name}:bookworm"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CODEEXEC_BASE_IMAGE")}

    def codeexec(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "codeexec"), *args],
            capture_output=True,
            text=True,
            timeout=1200,
            cwd=tmp_path,  # not the checkout: the wheel's files only
            env={**env, **extra},
        )

    try:
        made = codeexec("base-image", tag, "--json")
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout) == {"tag": tag, "suite": "bookworm", "built": True}
        again = codeexec("base-image", tag, "--json")
        assert json.loads(again.stdout)["built"] is False
        started = codeexec("start", name, CODEEXEC_BASE_IMAGE=tag)
        assert started.returncode == 0, started.stderr
        ran = codeexec("exec", "-s", name, "import sys; print(6 * 7, sys.version_info[0])")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.split() == ["42", "3"]
    finally:
        codeexec("stop", name)
        built = subprocess.run(
            ["docker", "images", "-q", "--filter", f"label=codeexec.base={tag}"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        subprocess.run(["docker", "rmi", "-f", *built, tag], capture_output=True, timeout=120)
    assert (
        not subprocess.run(
            ["docker", "image", "inspect", tag], capture_output=True, timeout=60
        ).returncode
        == 0
    )
