"""This process's file descriptors: a clear error before, or instead of, ``EMFILE``.

Each session a process holds keeps one connection open, and every docker call needs
a few pipes; a process near its ``ulimit -n`` would otherwise fail halfway through a
start with an error that blames the Docker engine.
"""

from __future__ import annotations

import os

from .errors import DockerError

DESCRIPTOR_HEADROOM = 32  # free descriptors a start needs: its docker calls' pipes, a socket


def out_of_descriptors(open_now: int | None = None) -> DockerError:
    """The error for a process that has used up its descriptors (``EMFILE``)."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    held = f"{open_now} of its {limit}" if open_now is not None else f"all {limit} of its"
    return DockerError(
        f"this process has {held} file descriptors open: each session it holds keeps one "
        "connection open, and a start needs a few more for its docker calls. Close the "
        "sessions it no longer uses (session.close()), or raise the limit (`ulimit -n`, "
        "resource.setrlimit(RLIMIT_NOFILE))"
    )


def check_descriptors(needed: int = DESCRIPTOR_HEADROOM) -> None:
    """Raise ``out_of_descriptors`` when fewer than ``needed`` are free (Linux; else no-op)."""
    try:
        open_now = len(os.listdir("/proc/self/fd"))
        import resource
    except (OSError, ImportError):
        return
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and limit - open_now < needed:
        raise out_of_descriptors(open_now)
