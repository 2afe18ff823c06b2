"""A failed docker call as the most specific ``DockerError``, with what to do about it.

Pure: recorded stderr fragments of docker (and podman) map to an error class and a hint;
the daemon's own reason is kept, never docker's usage trailer.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import DockerError, DockerNotAvailable, NoSuchSession

# Recorded stderr fragments -> the error class and what to tell the user.
_CLASSIFY: list[tuple[tuple[str, ...], type[DockerError], str]] = [
    (
        (
            "cannot connect to the docker daemon",
            "error during connect",
            "is the docker daemon running",
            "connection refused",
        ),
        DockerNotAvailable,
        "the Docker engine does not answer: start it (e.g. `dockerd` or Docker Desktop), "
        "or point DOCKER_HOST / `docker context use` at a running one",
    ),
    (
        ("permission denied while trying to connect",),
        DockerNotAvailable,
        "no permission to use the Docker engine: add your user to the `docker` group "
        "or run with access to the docker socket",
    ),
    (
        ("no such container", "no such object"),
        NoSuchSession,
        "the session's container does not exist (stopped, removed, or idle-timed out): "
        "start it again with `codeexec start`",
    ),
    (
        (
            "no such image",
            "image not known",  # podman
            "pull access denied",
            "repository does not exist",
            "manifest unknown",
            "failed to resolve reference",
        ),
        DockerError,
        "the image is not available locally and cannot be pulled: make a base image "
        "with `codeexec base-image` or set CODEEXEC_BASE_IMAGE to one you have",
    ),
    (
        ("unknown runtime specified", "unknown or invalid runtime name"),
        DockerError,
        "the Docker engine has no runtime of that name (--runtime, runtime=): use one "
        "that `docker info` lists under Runtimes, or leave it unset (`codeexec doctor` "
        "says how to add gVisor's)",
    ),
    (
        ("error response from daemon: network ",),
        DockerError,
        "no such Docker network (--network, network=): `docker network ls` lists them; "
        "use 'bridge', 'none' or one made with `docker network create`",
    ),
]


def reason(stderr: str, returncode: int | None) -> str:
    """The line of docker's stderr that says what went wrong (not its usage trailer)."""
    lines = stderr.strip().splitlines() or [f"exit code {returncode}"]
    said = [ln for ln in lines if ln.strip() and not ln.startswith(("Run '", "See '", "Usage:"))]
    return (said or lines)[-1].strip()


def classify(
    argv: Sequence[str], returncode: int | None, stdout: str, stderr: str, what: str
) -> DockerError:
    """Turn a failed docker call into the most specific ``DockerError`` with a hint."""
    low = stderr.lower()
    detail = reason(stderr, returncode)
    for needles, cls, hint in _CLASSIFY:
        if any(n in low for n in needles):
            return cls(
                f"{what} failed: {detail} — {hint}",
                argv=argv,
                returncode=returncode,
                stdout=stdout,
                stderr=stderr,
            )
    return DockerError(
        f"{what} failed: {detail}", argv=argv, returncode=returncode, stdout=stdout, stderr=stderr
    )
