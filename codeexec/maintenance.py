"""Housekeeping both faces call: list (with idle times), stop many, logs, gc, doctor, images.

Functions over :class:`~codeexec.docker.Docker` and
:class:`~codeexec.session.ContainerSession` that return frozen dataclasses and print
nothing; the CLI and the MCP server only format what they return. Each takes an
optional ``docker`` (default: the ``CODEEXEC_DOCKER`` CLI), so tests swap the engine.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import _addrcache, images
from ._engineargs import is_gvisor, runsc_fix
from .docker import LABEL_CACHE, LABEL_IMAGE, LABEL_MANAGED, LABEL_SCOPE, Docker
from .errors import CodeexecError, DockerError, DockerNotAvailable, NoSuchSession
from .models import ImageInfo, SessionInfo
from .options import validate_name
from .session import ContainerSession, list_sessions

_GONE_STATES = ("exited", "dead")
_PROBES = 32  # sessions asked for their idle time at once (each mostly waits)


# -- sessions ------------------------------------------------------------------------


def find_session(name: str, *, docker: Docker | None = None) -> SessionInfo:
    """The session called ``name`` (running or not), without connecting to it.

    Raises:
        NoSuchSession: no container carries that session name.
    """
    found = (docker or Docker()).find_session(validate_name(name), all=True)
    if not found:
        raise NoSuchSession(
            f"no session named {name!r}: `codeexec ls` lists them, "
            f"`codeexec start {name}` starts one"
        )
    return found[0].info  # a running one first


def session_logs(name: str, *, tail: int | None = 200, docker: Docker | None = None) -> str:
    """The last ``tail`` lines (None: all, at most 4 MiB) of session ``name``'s container log.

    Raises:
        NoSuchSession: no container carries that session name.
    """
    docker = docker or Docker()
    return docker.logs(find_session(name, docker=docker).container_id, tail=tail)


@dataclass(frozen=True)
class ListedSession:
    """One session as ``codeexec ls`` shows it: what Docker knows, and how long it idled."""

    info: SessionInfo
    idle_seconds: float | None = None  # None: not running, or its executor did not answer

    def to_dict(self) -> dict[str, Any]:
        return {**self.info.to_dict(), "idle_seconds": self.idle_seconds}


def list_idle(*, docker: Docker | None = None) -> list[ListedSession]:
    """Every session (sorted by name), each running one asked for its idle time."""
    docker = docker or Docker()
    sessions = list_sessions(docker=docker)
    idle = probe_idle(sessions, docker=docker)
    return [ListedSession(s, seconds) for s, seconds in zip(sessions, idle, strict=True)]


def probe_idle(
    sessions: Sequence[SessionInfo], *, docker: Docker | None = None
) -> list[float | None]:
    """Seconds each session has been idle, in order (None when it cannot be asked).

    Running sessions are asked at once, each over its own connection. Looking does
    not count as activity, so `codeexec ls` never keeps a session alive. A session
    that cannot be asked is one whose executor completed no handshake within a few
    seconds (``ContainerSession.attach``'s bound), or one that is not running.
    """
    docker = docker or Docker()
    running = [s for s in sessions if s.status == "running"]
    if len(running) < 2:
        return [_idle_seconds(s, docker) for s in sessions]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(running), _PROBES), "codeexec-probe") as probes:
        return list(probes.map(lambda s: _idle_seconds(s, docker), sessions))


def _idle_seconds(info: SessionInfo, docker: Docker) -> float | None:
    if info.status != "running":
        return None
    try:
        session = ContainerSession.attach(info.name, docker=docker)
    except CodeexecError:
        return None
    try:
        return session.idle_seconds()
    except CodeexecError:
        return None
    finally:
        session.close()


@dataclass(frozen=True)
class StopReport:
    """Which sessions were stopped, and which of the requested names do not exist."""

    stopped: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


def stop_sessions(
    names: Sequence[str] = (),
    *,
    all: bool = False,
    prefix: str = "",
    scope: str | None = None,
    docker: Docker | None = None,
) -> StopReport:
    """Remove the containers of the named sessions, or of every session (``all``).

    ``prefix`` narrows ``all`` to sessions whose name starts with it; ``scope`` (names
    or ``all``) to the sessions an MCP server of that scope started. Warm pool
    containers (not yet sessions) are left to the process that owns them.
    """
    docker = docker or Docker()
    sessions = [
        s for s in list_sessions(docker=docker)  # unclaimed pool containers have no name
        if scope is None or s.labels.get(LABEL_SCOPE) == scope
    ]  # fmt: skip
    if all:
        chosen = [s for s in sessions if s.name.startswith(prefix)]
        missing: list[str] = []
    else:
        wanted = {validate_name(n) for n in names}
        chosen = [s for s in sessions if s.name in wanted]
        missing = sorted(wanted - {s.name for s in chosen})
    remove_containers({s.container_id: s.name for s in chosen}, docker=docker)
    return StopReport(stopped=tuple(sorted({s.name for s in chosen})), missing=tuple(missing))


def running_in_scope(scope: str, *, docker: Docker | None = None) -> set[str]:
    """The names of the running sessions labelled with ``scope``: what its quota counts."""
    running = (docker or Docker()).ps({LABEL_MANAGED: "1", LABEL_SCOPE: scope}, all=False)
    return {s.name for s in running if s.name}


def remove_containers(owned: Mapping[str, str], *, docker: Docker | None = None) -> None:
    """Stop many sessions as ``ContainerSession.stop`` stops one, in one ``docker rm -f``.

    ``owned`` maps each container id to its session name, whose address-cache entry
    is forgotten first, so no later process knocks at a gone address. Missing
    containers are not an error.
    """
    for container_id, name in owned.items():
        if _is_name(name):  # a label names the cache file: never let it be a path
            _addrcache.forget(name, container_id)
    (docker or Docker()).rm(*owned)


def _is_name(name: str) -> bool:
    try:
        validate_name(name)
    except CodeexecError:
        return False
    return True


def list_images(*, docker: Docker | None = None) -> list[ImageInfo]:
    """The environment images codeexec built (labelled ``codeexec.image=1``)."""
    docker = docker or Docker()
    return sorted(docker.images({LABEL_IMAGE: "1"}), key=lambda i: i.created, reverse=True)


# -- gc ------------------------------------------------------------------------------


def age_seconds(info: SessionInfo, now: datetime | None = None) -> float | None:
    """Seconds since the session's container was created (None if unknown)."""
    try:
        then = datetime.fromisoformat(info.created)
    except ValueError:
        return None
    if then.tzinfo is None:
        return None
    return ((now or datetime.now(timezone.utc)) - then).total_seconds()


def past_lifetime(info: SessionInfo, now: datetime | None = None) -> bool:
    """Whether a running container has outlived its maximum lifetime.

    Its executor removes it at that age; one still running (an executor that
    cannot enforce it, or a wedged one) is stale.
    """
    age = age_seconds(info, now)
    return bool(info.max_lifetime) and age is not None and age >= (info.max_lifetime or 0)


@dataclass(frozen=True)
class GcReport:
    """What ``gc`` removed (or, with ``dry_run``, would remove)."""

    containers: tuple[SessionInfo, ...] = ()
    images: tuple[ImageInfo, ...] = ()
    kept_images: tuple[ImageInfo, ...] = ()  # unused but tagged, kept without all_images
    failed: tuple[str, ...] = ()  # removals the engine refused (e.g. image in use)
    dry_run: bool = False
    volumes: tuple[str, ...] = ()  # package cache volumes (with all_images)
    reaped: tuple[str, ...] = ()  # gVisor sandboxes of failed starts (not in dry runs)


def gc(
    *,
    dry_run: bool = False,
    all_images: bool = False,
    idle_for: float | None = None,
    docker: Docker | None = None,
) -> GcReport:
    """Remove exited, dead or overdue codeexec containers and env images no container uses.

    Running containers past their maximum lifetime always go. ``idle_for`` also
    removes running sessions that ran no code for that many seconds; a session
    whose executor does not answer a handshake counts as idle since its start (a
    wedged or stopped executor cannot enforce its own idle timeout). By default
    only untagged env images (superseded builds) are removed: the tagged ones are
    the build cache, and removing them means rebuilding the next session with those
    dependencies. ``all_images`` removes every unused env image and the package
    cache volumes of image builds.
    """
    docker = docker or Docker()
    now = datetime.now(timezone.utc)
    infos = [ref.info for ref in docker.ps_inspect({LABEL_MANAGED: "1"})]
    gone = tuple(
        s
        for s in infos
        if s.status in _GONE_STATES or (s.status == "running" and past_lifetime(s, now))
    )
    if idle_for is not None:
        chosen = {s.container_id for s in gone}
        running = [
            s for s in list_sessions(docker=docker)
            if s.status == "running" and s.container_id not in chosen
        ]  # fmt: skip
        idle = probe_idle(running, docker=docker)
        gone += tuple(
            s
            for s, seconds in zip(running, idle, strict=True)
            if (seconds if seconds is not None else age_seconds(s, now) or 0.0) >= idle_for
        )
    gone_ids = {s.container_id for s in gone}
    # An image counts as used by any container that stays, codeexec's or not.
    used: set[str] = set()
    for other in docker.ps_inspect({}):
        if other.id not in gone_ids:
            used.update({other.image_id, other.info.image})
    unused = [i for i in list_images(docker=docker) if i.image_id not in used and i.tag not in used]
    dangling = tuple(i for i in unused if i.tag.endswith(":<none>") or i.tag.startswith("<none>"))
    removable = tuple(unused) if all_images else dangling
    kept = tuple(i for i in unused if i not in removable)
    volumes = tuple(docker.volumes(LABEL_CACHE)) if all_images else ()
    failed: list[str] = []
    if not dry_run:
        remove_containers({s.container_id: s.name for s in gone}, docker=docker)
        for image in removable:
            ref = image.image_id if image in dangling else image.tag
            try:
                docker.rmi(ref)
            except DockerNotAvailable:
                raise
            except DockerError as exc:
                failed.append(f"{image.tag}: {exc.message}")
        for volume in volumes:
            try:
                docker.volume_rm(volume)
            except DockerNotAvailable:
                raise
            except DockerError as exc:  # in use by a build right now
                failed.append(f"{volume}: {exc.message}")
    reaped = () if dry_run else _reap(docker)
    return GcReport(
        containers=gone, images=removable, kept_images=kept, failed=tuple(failed),
        dry_run=dry_run, volumes=volumes, reaped=reaped,
    )  # fmt: skip


def _reap(docker: Docker) -> tuple[str, ...]:
    """The leftovers of failed gVisor starts, removed (with the base image, if it is here)."""
    base = images.default_base_image()
    return tuple(docker.reap(base)) if docker.image_exists(base) else ()


# -- doctor --------------------------------------------------------------------------


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
    docker = docker or Docker()
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
            "Python 3.9+ you have, or build one without a registry with "
            "executor_image/make_base_image.sh",
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


def _gvisor_check(docker: Docker) -> Check:
    """Whether sessions can run under gVisor (``--runtime runsc``); optional, never a failure."""
    if docker.flavour == "podman":
        return Check("gVisor runtime", True, "not checked under podman (docs/configuration.md)")
    runtimes = docker.runtimes()
    gvisor = sorted(n for n, path in runtimes.items() if is_gvisor(n, runtimes))
    if gvisor:
        return Check(
            "gVisor runtime", True, f"{', '.join(gvisor)}: start with --runtime {gvisor[0]}"
        )
    return Check("gVisor runtime", True, "not configured (optional)", runsc_fix(""))
