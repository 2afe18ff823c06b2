"""executor_image/make_base_image.sh, run for real with stand-ins for debootstrap and docker.

It runs as root on CI hosts, so where it writes matters: its debootstrap log must
sit in its own private directory, never at a guessable path in the shared /tmp.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "executor_image" / "make_base_image.sh"

FAKE_DEBOOTSTRAP = """#!/bin/sh
# Records where its output goes (the script's log), then succeeds or fails.
log="$(readlink "/proc/$$/fd/1")"
printf '%s\n%s\n' "$log" "$(stat -c '%a %u' "$(dirname "$log")")" > "$RECORD"
echo "I: Retrieving Release"
[ -z "$FAKE_FAIL" ] || { echo "E: mirror unreachable"; exit 1; }
"""
FAKE_DOCKER = """#!/bin/sh
case "$1" in
  image) exit 1 ;;            # `image inspect`: the tag is not there yet
  import) cat >/dev/null ;;   # takes the tar stream
esac
"""


def _run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("debootstrap", FAKE_DEBOOTSTRAP), ("docker", FAKE_DOCKER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    record = tmp_path / "log-path"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "codeexec-test-base:never"],
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "CODEEXEC_DOCKER": "docker",
            "DEBIAN_MIRROR": "http://mirror.invalid/debian",
            "RECORD": str(record),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, record


def test_debootstrap_log_is_in_a_private_directory(tmp_path: Path) -> None:
    proc, record = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    path, parent = record.read_text().splitlines()
    log = Path(path)
    # Not /tmp itself (world-writable, sticky): a directory only its owner may enter.
    assert parent == f"700 {os.geteuid()}", (log, parent)
    assert log.parent.name.startswith("codeexec-base.")
    assert not log.parent.exists()  # removed with everything in it


def test_failed_debootstrap_shows_its_log_and_leaves_nothing(tmp_path: Path) -> None:
    proc, record = _run(tmp_path, FAKE_FAIL="1")
    assert proc.returncode == 1
    assert "E: mirror unreachable" in proc.stderr
    log = Path(record.read_text().splitlines()[0])
    assert not log.exists() and not log.parent.exists()
