"""``codeexec doctor``: what a session needs, checked in order, with a fix for each.

With several engines configured (``engines.py``), each is asked first, at once and
bounded; one that does not answer fails its own check and the rest go on with the
first engine that answers.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from . import _locality, _urls, engines, images
from ._engineargs import is_gvisor, runsc_fix
from .docker import Docker
from .errors import CodeexecError, DockerError, DockerNotAvailable
from .session import ContainerSession


@dataclass(frozen=True)
class Check:
    """One doctor check: what was checked, whether it passed, and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def doctor(
    *,
    docker: Docker | None = None,
    base_image: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Iterator[Check]:
    """Check, in order, what a session needs; stop at the first failure.

    The last check starts a throwaway session ``codeexec-doctor-<hex>``, runs
    ``1+1`` in it and removes it.
    """
    if docker is None:
        docker = yield from _engines()
        if docker is None:
            return
    cli = os.environ.get("CODEEXEC_DOCKER") or "docker"
    try:
        yield Check("docker CLI", True, docker.binary)
    except DockerNotAvailable as exc:
        yield Check(
            "docker CLI",
            False,
            exc.message,
            f"install Docker (or podman) so `{cli}` is on PATH, or set "
            "CODEEXEC_DOCKER to the CLI's full path",
        )
        return
    try:
        yield Check("Docker engine", True, f"server version {docker.version()}")
    except DockerError as exc:
        where = os.environ.get("DOCKER_HOST") or "the current `docker context`"
        yield Check(
            "Docker engine",
            False,
            exc.message,
            f"start the engine, or point DOCKER_HOST / `docker context use` at a "
            f"running one (now: {where})",
        )
        return
    yield _gvisor_check(docker)
    base = base_image or images.default_base_image()
    if not docker.image_exists(base):
        yield Check(
            "base image",
            False,
            f"{base} is not available locally",
            f"`{cli} pull {base}`, set CODEEXEC_BASE_IMAGE to an image with "
            "Python 3.9+ you have, or build one without a registry: "
            "`codeexec base-image` (as root)",
        )
        return
    yield Check("base image", True, base)
    name = f"codeexec-doctor-{secrets.token_hex(3)}"
    try:
        with ContainerSession.start(
            name, base_image=base, idle_timeout=300, on_progress=on_progress, docker=docker
        ) as session:
            result = session.execute("1+1", timeout=30)
        if result.value != "2":
            raise CodeexecError(f"`1+1` gave {result.status} {result.value!r}")
    except CodeexecError as exc:
        yield Check(
            "session handshake",
            False,
            exc.message,
            "run `codeexec start --debug` to see the build and container logs; "
            "check the base image has Python 3.9+",
        )
        return
    yield Check("session handshake", True, f"{name} started and answered 1+1 = 2")
    from .snapshot import doctor_check

    yield Check("snapshots", True, *doctor_check(docker))


def _engines() -> Generator[Check, None, Docker | None]:
    """One check per configured engine (when several): its version and whether its
    published ports are this host's (``tcp``) or reached by the exec relay. Returns
    the first engine that answered, for the checks that follow."""
    configured = engines.configured()
    if len(configured) == 1:
        return configured[0]
    answers = engines.ask(configured, lambda e: (e.version(), _locality.locality(e)))
    for answer in answers:
        if answer.value is None:
            yield Check(
                f"engine {answer.engine.name}", False, answer.problem,
                "start that engine or remove it from CODEEXEC_ENGINES; its sessions are "
                "unreachable meanwhile, the other engines keep working",
            )  # fmt: skip
        else:
            version, place = answer.value
            route = {"local": "tcp", "remote": "exec relay"}.get(place, "decided at first use")
            yield Check(
                f"engine {answer.engine.name}", True, f"server version {version}, route: {route}"
            )
    return next((a.engine for a in answers if a.value is not None), None)


def _gvisor_check(docker: Docker) -> Check:
    """Whether sessions can run under gVisor (``--runtime runsc``); optional, never a failure."""
    if docker.flavour == "podman":
        return Check(
            "gVisor runtime",
            True,
            f"not checked under podman ({_urls.doc('configuration', 'podman')})",
        )
    runtimes = docker.runtimes()
    gvisor = sorted(n for n, path in runtimes.items() if is_gvisor(n, runtimes))
    if gvisor:
        return Check(
            "gVisor runtime", True, f"{', '.join(gvisor)}: start with --runtime {gvisor[0]}"
        )
    return Check("gVisor runtime", True, "not configured (optional)", runsc_fix(""))
