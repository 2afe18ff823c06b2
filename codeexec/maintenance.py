"""Housekeeping behind the CLI: stop, gc, doctor, image listing and `cp` paths.

Pure functions over :class:`~codeexec.docker.Docker` and
:class:`~codeexec.session.ContainerSession` that return dataclasses; the CLI only
formats what they return.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Literal

from . import images
from .docker import LABEL_IMAGE, LABEL_MANAGED, Docker
from .errors import CodeexecError, DockerError, DockerNotAvailable, NoSuchSession
from .models import ImageInfo, SessionInfo
from .options import validate_name
from .session import ContainerSession, list_sessions

_GONE_STATES = ("exited", "dead")


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


@dataclass(frozen=True)
class StopReport:
    """Which sessions were stopped, and which of the requested names do not exist."""

    stopped: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


def stop_sessions(
    names: Sequence[str] = (), *, all: bool = False, prefix: str = "", docker: Docker | None = None
) -> StopReport:
    """Remove the containers of the named sessions, or of every session (``all``).

    ``prefix`` narrows ``all`` to sessions whose name starts with it. Warm pool
    containers (not yet sessions) are left to the process that owns them.
    """
    docker = docker or Docker()
    sessions = list_sessions(docker=docker)  # unclaimed pool containers have no name
    if all:
        chosen = [s for s in sessions if s.name.startswith(prefix)]
        missing: list[str] = []
    else:
        wanted = {validate_name(n) for n in names}
        chosen = [s for s in sessions if s.name in wanted]
        missing = sorted(wanted - {s.name for s in chosen})
    docker.rm(*(s.container_id for s in chosen))
    return StopReport(stopped=tuple(sorted({s.name for s in chosen})), missing=tuple(missing))


def idle_times(
    sessions: Sequence[SessionInfo], *, docker: Docker | None = None
) -> dict[str, float | None]:
    """Seconds each running session has been idle (None when it cannot be asked).

    Looking does not count as activity, so `codeexec ls` never keeps a session alive.
    A session that cannot be asked is one whose executor completed no handshake
    within a few seconds (``ContainerSession.attach``'s bound).
    """
    docker = docker or Docker()
    idle: dict[str, float | None] = {}
    for info in sessions:
        idle[info.name] = None
        if info.status != "running":
            continue
        try:
            session = ContainerSession.attach(info.name, docker=docker)
        except CodeexecError:
            continue
        try:
            idle[info.name] = session.idle_seconds()
        except CodeexecError:
            pass
        finally:
            session.close()
    return idle


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
    dependencies. ``all_images`` removes every unused env image.
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
        idle = idle_times(running, docker=docker)

        def idle_seconds(s: SessionInfo) -> float:
            seconds = idle[s.name]
            return seconds if seconds is not None else age_seconds(s, now) or 0.0

        gone += tuple(s for s in running if idle_seconds(s) >= idle_for)
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
    failed: list[str] = []
    if not dry_run:
        docker.rm(*gone_ids)
        for image in removable:
            ref = image.image_id if image in dangling else image.tag
            try:
                docker.rmi(ref)
            except DockerNotAvailable:
                raise
            except DockerError as exc:
                failed.append(f"{image.tag}: {exc.message}")
    return GcReport(
        containers=gone, images=removable, kept_images=kept, failed=tuple(failed), dry_run=dry_run
    )


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


# -- cp ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyPlan:
    """One `codeexec cp`: the direction, the session, and both paths."""

    direction: Literal["upload", "download"]
    session: str
    local: str
    remote: str


def _split_remote(arg: str) -> tuple[str, str] | None:
    head, sep, tail = arg.partition(":")
    if not sep or "/" in head or "\\" in head or len(head) < 2:  # C:\x is a local path
        return None
    validate_name(head)
    return head, tail


def plan_copy(src: str, dst: str) -> CopyPlan:
    """Parse ``docker cp``-style arguments: exactly one side is ``SESSION:PATH``.

    Raises:
        ValueError: neither or both sides name a session, or a path is empty.
    """
    s, d = _split_remote(src), _split_remote(dst)
    if (s is None) == (d is None):
        raise ValueError(
            "exactly one of SRC and DST must be SESSION:PATH, "
            "e.g. `codeexec cp data.csv default:data.csv`"
        )
    if s is not None:
        if not s[1]:
            raise ValueError(f"{src!r} names no file in the session")
        return CopyPlan("download", s[0], dst, s[1])
    assert d is not None
    remote = d[1]
    if not remote or remote.endswith("/"):
        remote += Path(src).name
    return CopyPlan("upload", d[0], src, remote)


@dataclass(frozen=True)
class CopyResult:
    plan: CopyPlan
    local_path: str
    size: int = field(default=0)


def copy(plan: CopyPlan, *, docker: Docker | None = None) -> CopyResult:
    """Carry out a :class:`CopyPlan` through the session's executor.

    Raises:
        NoSuchSession: the session does not run.
        FileTransferError: the file is missing, too large or not writable.
    """
    session = ContainerSession.attach(plan.session, docker=docker)
    try:
        if plan.direction == "upload":
            size = session.upload(plan.local, plan.remote)
            return CopyResult(plan, plan.local, size)
        path = session.download(plan.remote, plan.local)
        return CopyResult(plan, str(path), path.stat().st_size)
    finally:
        session.close()


def remote_display(plan: CopyPlan) -> str:
    remote = PurePosixPath(plan.remote)
    shown = remote if remote.is_absolute() else PurePosixPath("/workspace") / remote
    return f"{plan.session}:{shown}"
