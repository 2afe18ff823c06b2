"""``codeexec base-image``: a Python base image made from Debian packages, no registry.

Session images build ``FROM`` a base image with Python 3.9+ (``python:3.12-slim``
unless ``CODEEXEC_BASE_IMAGE`` names another). A host that reaches no container
registry makes one here instead: ``make_base_image.sh``, shipped in the wheel next
to the executor, debootstraps a minimal Debian with python3 and ``docker import``\\ s
it. Everything a user can get wrong is checked first, each with a one-line fix: the
tag, then (when the image is not already there) root and debootstrap.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from . import _urls
from .docker import Docker
from .errors import CodeexecError, ImageBuildError, InvalidOption
from .images import executor_source_dir

DEFAULT_TAG = "codeexec-base:bookworm"
DEFAULT_SUITE = "bookworm"
BUILD_TIMEOUT = 1800.0
# A local image reference: [host[:port]/]path[:tag], lower-case path components.
_TAG = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+|/)[a-z0-9]+)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
)
_SUITE = re.compile(r"^[a-z]{2,20}$")


@dataclass(frozen=True)
class BaseImageResult:
    """What ``build_base_image`` did: ``built`` is False when ``tag`` already existed."""

    tag: str
    suite: str
    built: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def script_path() -> str:
    """``make_base_image.sh``, from the wheel (``codeexec/_executor_image``) or a checkout."""
    return str(executor_source_dir() / "make_base_image.sh")


def validate(tag: str, suite: str = DEFAULT_SUITE) -> None:
    """Refuse a tag or Debian suite that could not name an image (before any docker call)."""
    if len(tag) > 255 or not _TAG.match(tag):
        raise InvalidOption(
            f"{tag[:80]!r} is not an image tag: give one such as {DEFAULT_TAG!r} "
            "(lower-case name, optional :tag)"
        )
    if not _SUITE.match(suite):
        raise InvalidOption(f"{suite[:40]!r} is not a Debian suite name such as 'bookworm'")


def build_base_image(
    tag: str = DEFAULT_TAG,
    *,
    suite: str = DEFAULT_SUITE,
    docker: Docker | None = None,
    on_progress: Callable[[str], None] | None = None,
    timeout: float = BUILD_TIMEOUT,
) -> BaseImageResult:
    """Make ``tag`` from Debian ``suite`` packages with debootstrap; nothing if it exists.

    Use it with ``CODEEXEC_BASE_IMAGE=<tag>`` (or ``base_image=``) on a host that
    cannot pull ``python:3.12-slim``. Needs root and debootstrap; the Debian mirror
    is the host's apt mirror, or ``DEBIAN_MIRROR``.

    Raises:
        InvalidOption: ``tag`` or ``suite`` is malformed.
        CodeexecError: not root, or debootstrap is missing.
        ImageBuildError: debootstrap or the import failed (``log_tail`` says why).
    """
    validate(tag, suite)
    docker = docker or Docker()
    if docker.image_exists(tag):
        return BaseImageResult(tag, suite, built=False)
    if os.geteuid() != 0:
        raise CodeexecError(
            "building a base image needs root (debootstrap makes a Debian tree): "
            f"run `sudo codeexec base-image {tag}`"
        )
    if shutil.which("debootstrap") is None:
        raise CodeexecError(
            "debootstrap is missing: install it (`apt-get install -y debootstrap`) "
            "and run `codeexec base-image` again"
        )
    tail: list[str] = []

    def keep(line: str) -> None:
        tail.append(line.rstrip("\n"))
        del tail[:-40]
        if on_progress is not None:
            on_progress(tail[-1])

    script = script_path()
    code, timed_out = docker.run_base_image_script(
        script, tag, suite=suite, timeout=timeout, on_line=keep
    )
    if code != 0:
        why = f"did not finish within {timeout:.0f} s" if timed_out else f"exited with {code}"
        raise ImageBuildError(
            f"making base image {tag} from Debian {suite} {why}; the log's end is below "
            f"(help: {_urls.doc('configuration', 'images-without-a-registry')})",
            argv=["bash", script, tag],
            returncode=code,
            log_tail="\n".join(tail),
        )
    return BaseImageResult(tag, suite, built=True)
