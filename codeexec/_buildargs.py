"""Pure pieces of image builds: argument lists and the error of a failed step.

An image is a trusted ``docker build`` (``build_argv``), then, for dependencies, a
confined ``docker run`` (``install_argv``) and a ``docker commit`` (``commit_argv``).
Nothing here runs a process; ``docker.py`` does, and re-exports these names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._dockerargs import EXECUTOR_UID, Command, classify, confine
from ._engineargs import Flavour
from .errors import DockerError, DockerNotAvailable, ImageBuildError
from .models import Limits

# Package build code (setup.py, build backends) runs as this unprivileged user, which
# owns the image's venv: the session user (EXECUTOR_UID) can read it but never rewrite
# what the executor imports, even with read_only=False.
BUILD_UID = 10002


def build_argv(
    context_dir: str, tag: str | None, labels: Mapping[str, str], iidfile: str
) -> list[str]:
    """The ``docker build`` arguments of an image's trusted, root-needing steps.

    ``--force-rm`` so a failed step leaves no container; ``--network none`` because
    those steps (venv, users, trust store, executor) download nothing. No build
    arguments: package code never runs here (see ``install_argv``).
    """
    cmd = Command(["build", "--force-rm", "--network", "none", "--iidfile", iidfile])
    cmd.opt("--tag", tag)
    cmd.repeat("--label", [f"{k}={v}" for k, v in sorted(labels.items())])
    cmd.append(context_dir)
    return cmd


INSTALL_SCRIPT = "/opt/codeexec/build/install.sh"
# Where the install run sees the package cache volume (made 10002's in the image, so
# the volume's first mount copies that ownership in); install.sh uses it if writable.
CACHE_DIR = "/opt/codeexec/cache"
LABEL_CACHE = "codeexec.cache"


def cache_volume_name(base_image_id: str) -> str:
    """The package cache volume of builds on one base image (by id, not by name)."""
    import hashlib

    return "codeexec-cache-" + hashlib.sha256(base_image_id.encode()).hexdigest()[:12]


def install_argv(
    image: str,
    container_name: str,
    limits: Limits,
    *,
    runtime: str | None = None,
    cache_volume: str | None = None,
    flavour: Flavour = "docker",
) -> list[str]:
    """The ``docker run`` that installs a session's dependencies into ``image``.

    Package build code runs here, confined like a session (``confine``) as
    ``BUILD_UID``. Network: the default bridge, the only way to reach a package index
    or proxy without a proxy of our own. No labels and no ``--env``: ``docker commit``
    would copy both into the image; proxy settings arrive on stdin instead.
    ``cache_volume`` is mounted at ``CACHE_DIR`` for uv's or pip's cache; ``docker
    commit`` never copies a volume's content into the image.
    """
    cmd = Command(["run", "--interactive", "--name", container_name])
    confine(cmd, limits, uid=BUILD_UID, flavour=flavour)
    cmd.opt("--tmpfs", f"/tmp:rw,exec,nosuid,nodev,size={limits.tmp_size},mode=1777")
    cmd.opt("--network", "bridge")
    cmd.opt("--runtime", runtime)
    if cache_volume is not None:
        cmd.opt("--mount", f"type=volume,source={cache_volume},target={CACHE_DIR}")
    cmd.extend([image, "sh", INSTALL_SCRIPT])
    return cmd


def commit_changes(image_config: Mapping[str, Any]) -> list[str]:
    """``docker commit --change`` lines giving back what the install run overrode.

    The run sets the user and the command; the labels, environment, entrypoint and
    exposed port stay the stage image's, since the run adds none of its own.
    """
    return [
        f"USER {image_config.get('User') or f'{EXECUTOR_UID}:{EXECUTOR_UID}'}",
        f"WORKDIR {image_config.get('WorkingDir') or '/workspace'}",
        "CMD " + json.dumps(list(image_config.get("Cmd") or [])),
    ]


def commit_argv(
    container: str, tag: str, changes: Sequence[str], message: str | None = None
) -> list[str]:
    """The ``docker commit`` that turns a finished install container into the image.

    ``message`` becomes the new layer's comment in ``docker history``.
    """
    cmd = Command(["commit"])
    cmd.repeat("--change", changes)
    cmd.opt("--message", message)
    cmd.extend([container, tag])
    return cmd


def build_error(
    argv: Sequence[str],
    returncode: int,
    tail: Sequence[str],
    timed_out: bool,
    timeout: float,
    limits: Limits | None = None,
) -> DockerError:
    """The error of a failed build step: ``ImageBuildError`` with the log's end.

    ``limits`` are given for the dependency install (``install_argv``), not the build.
    """
    log_tail = "\n".join(tail[-40:])
    if timed_out:
        reason = f"did not finish within {timeout:.0f} s"
    elif limits is not None and returncode == 137:
        reason = (
            f"the install was killed (exit 137), most likely for using more than its "
            f"{limits.memory} memory limit: give the session more memory"
        )
    else:
        reason = _build_failure_reason(tail)
    # An install's output is the packages' own (a refused connection is pip's); only
    # exit code 125 is the docker CLI's own failure there.
    if limits is None or returncode == 125:
        err = classify(argv, returncode, "", log_tail, "building the session image")
        if isinstance(err, DockerNotAvailable):
            return err
    return ImageBuildError(
        f"building the session image failed: {reason}. Check the dependency names "
        "and versions, and that the package index is reachable; the end of the "
        "build log follows.",
        log_tail=log_tail,
        argv=argv,
        returncode=returncode,
        stderr=log_tail,
    )


def _build_failure_reason(tail: Sequence[str]) -> str:
    for line in reversed(tail):
        low = line.lower()
        if "no matching distribution" in low or "could not find a version" in low:
            return line.strip()
        if "certificate verify failed" in low:
            return (
                "TLS certificate verification failed inside the build: set "
                "CODEEXEC_CA_BUNDLE to your proxy's CA bundle"
            )
    for line in reversed(tail):
        if line.strip().lower().startswith(("error", "the command")):
            return line.strip()
    return "a build step failed"
