"""`codeexec base-image`: checks before any work, then the shipped script, run for real
with stand-ins for debootstrap and docker (the real build: tests/integration/test_wheel.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codeexec import baseimage
from codeexec.cli import app
from codeexec.docker import Docker
from codeexec.errors import CodeexecError, ImageBuildError, InvalidOption

# Records every call; `image inspect` answers as an engine without the image does.
FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$1" in
  image) echo "Error: No such image: $4" >&2; exit 1 ;;
  import) cat >/dev/null; echo "sha256:0123" ;;
esac
"""
FAKE_DEBOOTSTRAP = """#!/bin/sh
echo "I: Retrieving Release for suite $3"
[ -z "$FAKE_FAIL" ] || { echo "E: Failed getting release file"; exit 1; }
mkdir -p "$4/usr/bin"
"""


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin directory with both stand-ins, first on PATH; returns the call log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("debootstrap", FAKE_DEBOOTSTRAP)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CODEEXEC_DOCKER", str(bin_dir / "docker"))
    monkeypatch.setenv("CALLS", str(calls))
    monkeypatch.setenv("DEBIAN_MIRROR", "http://mirror.invalid/debian")
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # the script's own checks run as root
    return calls


@pytest.mark.parametrize(
    "tag", ["Bad Tag", "UPPER:x", "-rm", "a:b:c", "x" * 300, "name:", "a//b", "../x"]
)
def test_a_malformed_tag_is_refused_before_any_docker_call(fakes: Path, tag: str) -> None:
    with pytest.raises(InvalidOption, match="is not an image tag"):
        baseimage.build_base_image(tag)
    assert fakes.read_text() == ""


@pytest.mark.parametrize("tag", ["codeexec-base:bookworm", "localhost:5000/team/py:3.11", "py"])
def test_image_tags_that_docker_takes_are_accepted(tag: str) -> None:
    baseimage.validate(tag)


def test_a_bad_suite_is_refused(fakes: Path) -> None:
    with pytest.raises(InvalidOption, match="Debian suite"):
        baseimage.build_base_image(suite="bookworm; rm -rf /")
    assert fakes.read_text() == ""


def test_not_root_says_to_use_sudo(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(CodeexecError, match=r"needs root.*`sudo codeexec base-image x:1`"):
        baseimage.build_base_image("x:1")
    assert fakes.read_text().splitlines() == ["image inspect --format {{.Id}} x:1"]


def test_missing_debootstrap_says_how_to_install_it(
    fakes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (Path(os.environ["CODEEXEC_DOCKER"]).parent / "debootstrap").unlink()
    monkeypatch.setenv("PATH", str(Path(os.environ["CODEEXEC_DOCKER"]).parent))
    with pytest.raises(CodeexecError, match=r"debootstrap is missing: .*apt-get install"):
        baseimage.build_base_image("x:1")


def test_the_shipped_script_builds_the_image(fakes: Path) -> None:
    lines: list[str] = []
    result = baseimage.build_base_image("x:1", suite="trixie", on_progress=lines.append)
    assert result == baseimage.BaseImageResult("x:1", "trixie", built=True)
    calls = fakes.read_text().splitlines()
    # Ours, then the script's own check, then the import under the tag.
    assert calls[:2] == ["image inspect --format {{.Id}} x:1", "image inspect x:1"]
    assert calls[2].startswith("import ") and calls[2].endswith(" - x:1")
    assert "debootstrap trixie from the host's mirror" in lines[0]
    assert lines[-1] == "built base image x:1"
    assert baseimage.script_path().endswith("make_base_image.sh")


def test_a_failed_debootstrap_is_an_image_build_error_with_its_log(
    fakes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(ImageBuildError) as info:
        baseimage.build_base_image("x:1")
    assert "exited with 1" in info.value.message
    assert "images-without-a-registry" in info.value.message
    assert "E: Failed getting release file" in info.value.log_tail
    assert not any(c.startswith("import") for c in fakes.read_text().splitlines())


def test_an_existing_image_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\necho "$*" >> "$CALLS"\necho sha256:abc\n')
    docker.chmod(0o755)
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # no root needed for nothing to do
    result = baseimage.build_base_image(docker=Docker(str(docker)))
    assert result == baseimage.BaseImageResult("codeexec-base:bookworm", "bookworm", built=False)
    assert len((tmp_path / "calls").read_text().splitlines()) == 1


def test_cli_json_and_exit_statuses(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["base-image", "x:1", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"tag": "x:1", "suite": "bookworm", "built": True}
    bad = runner.invoke(app, ["base-image", "Not A Tag"])
    assert bad.exit_code == 2
    assert "is not an image tag" in bad.stderr
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    denied = runner.invoke(app, ["base-image", "y:1"])
    assert denied.exit_code == 3
    assert "sudo codeexec base-image y:1" in denied.stderr
