"""An installed wheel, not only the checkout, must build images and run code."""

from __future__ import annotations

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
