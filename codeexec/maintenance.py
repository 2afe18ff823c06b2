"""Housekeeping both faces call: list (with idle times), stop many, logs, gc, doctor, images.

Functions over :class:`~codeexec.docker.Docker` and
:class:`~codeexec.session.ContainerSession` that return frozen dataclasses and print
nothing; the CLI and the MCP server only format what they return. Each takes an
optional ``docker`` (default: the ``CODEEXEC_DOCKER`` CLI), so tests swap the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from . import _addrcache, _forking, engines, images
from ._doctor import Check as Check, doctor as doctor  # re-exported: the faces call them
from .docker import LABEL_CACHE, LABEL_IMAGE, LABEL_MANAGED, LABEL_SCOPE, Docker
from .errors import CodeexecError, DockerError, DockerNotAvailable, NoSuchSession
from .models import ImageInfo, SessionInfo, SessionRef
from .options import validate_name
from .session import ContainerSession, list_sessions

_GONE_STATES = ("exited", "dead")
_PROBES = 32  # sessions asked for their idle time at once (each mostly waits)


# -- sessions ------------------------------------------------------------------------


def find_session(name: str, *, docker: Docker | None = None) -> SessionInfo:
    """The session called ``name`` (running or not, on any engine), without connecting.

    Raises:
        NoSuchSession: no container carries that session name.
    """
    return _find(name, docker)[0].info


def _find(name: str, docker: Docker | None) -> tuple[SessionRef, Docker]:
    everywhere = _engines(docker)
    found = engines.locate(validate_name(name), everywhere, all=True)
    if not found:
        raise NoSuchSession(
            f"no session named {name!r}: `codeexec ls` lists them, "
            f"`codeexec start {name}` starts one"
        )
    return found[0], engines.by_key(found[0].engine, everywhere) or everywhere[0]


def _engines(docker: Docker | None) -> list[Docker]:
    """``docker`` alone, or (None) every configured engine (``engines.py``)."""
    return [docker] if docker is not None else engines.configured()


def session_logs(
    name: str, *, tail: int | None = 200, docker: Docker | None = None,
    follow: Callable[[str], None] | None = None,
) -> str:  # fmt: skip
    """The last ``tail`` lines (None: all, at most 4 MiB) of session ``name``'s container log.

    With ``follow``, those lines and each later one go there (``Docker.logs``).

    Raises:
        NoSuchSession: no container carries that session name.
    """
    ref, home = _find(name, docker)
    return home.logs(ref.id, tail=tail, follow=follow)


@dataclass(frozen=True)
class ListedSession:
    """One session as ``codeexec ls`` shows it: what Docker knows, and how long it idled."""

    info: SessionInfo
    idle_seconds: float | None = None  # None: not running, or its executor did not answer

    def to_dict(self) -> dict[str, Any]:
        return {**self.info.to_dict(), "idle_seconds": self.idle_seconds}


@dataclass(frozen=True)
class Listing:
    """``ls``: the sessions of every engine that answered, and the ones that did not."""

    sessions: tuple[ListedSession, ...]
    unreachable: tuple[str, ...] = ()  # "engine: why"


def list_idle(*, docker: Docker | None = None) -> list[ListedSession]:
    """Every session (sorted by name), each running one asked for its idle time."""
    return list(list_everywhere(docker=docker).sessions)


def list_everywhere(*, docker: Docker | None = None) -> Listing:
    """``list_idle`` over every configured engine (each asked at once, bounded)."""
    answers = engines.ask(_engines(docker), engines.sessions_on)
    pairs = [(s, a.engine) for a in answers for s in a.value or []]
    pairs.sort(key=lambda p: (p[0].name, p[0].engine))
    probed = _probe_pairs(pairs)
    listed = tuple(
        ListedSession(replace(s, route=route), idle)
        for (s, _), (idle, route) in zip(pairs, probed, strict=True)
    )
    return Listing(listed, tuple(engines.unreachable(answers)))


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
    return [idle for idle, _ in _probe_pairs([(s, docker) for s in sessions])]


def _probe_pairs(pairs: Sequence[tuple[SessionInfo, Docker]]) -> list[tuple[float | None, str]]:
    if sum(s.status == "running" for s, _ in pairs) < 2:
        return [_idle_seconds(s, d) for s, d in pairs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(pairs), _PROBES), "codeexec-probe") as probes:
        return list(probes.map(lambda p: _idle_seconds(*p), pairs))


def _idle_seconds(info: SessionInfo, docker: Docker) -> tuple[float | None, str]:
    """The idle time and the route the executor was reached by (``""``: not asked)."""
    if info.status != "running":
        return None, ""
    try:
        session = ContainerSession.attach(info.name, docker=docker)
    except CodeexecError:
        return None, ""
    try:
        return session.idle_seconds(), session.route
    except CodeexecError:
        return None, session.route
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
    wanted = set() if all else {validate_name(n) for n in names}
    found: set[str] = set()
    stopped: set[str] = set()
    for answer in engines.ask(_engines(docker), engines.sessions_on):  # named ones only
        sessions = [
            s for s in answer.value or [] if scope is None or s.labels.get(LABEL_SCOPE) == scope
        ]  # fmt: skip
        chosen = [s for s in sessions if (s.name.startswith(prefix) if all else s.name in wanted)]
        found |= {s.name for s in chosen}
        chosen, forks = _forking.with_forks(chosen, sessions)
        for name in forks:  # forks of sessions that keep running: only their branch ends
            _forking.stop_by_name(name, answer.engine, ContainerSession.attach)
        remove_containers({s.container_id: s.name for s in chosen}, docker=answer.engine)
        stopped |= {s.name for s in chosen} | set(forks)
    missing = sorted(wanted - found)
    return StopReport(stopped=tuple(sorted(stopped)), missing=tuple(missing))


def running_in_scope(scope: str, *, docker: Docker | None = None) -> set[str]:
    """The names of the running sessions labelled with ``scope``: what its quota counts."""
    labels = {LABEL_MANAGED: "1", LABEL_SCOPE: scope}
    answers = engines.ask(_engines(docker), lambda e: e.ps(labels, all=False))
    return {s.name for a in answers for s in a.value or [] if s.name}


def remove_containers(owned: Mapping[str, str], *, docker: Docker | None = None) -> None:
    """Stop many sessions as ``ContainerSession.stop`` stops one, in one ``docker rm -f``
    (with the markers of their forks).

    ``owned`` maps each container id to its session name, whose address-cache entry
    is forgotten first, so no later process knocks at a gone address. Missing
    containers are not an error.
    """
    docker = docker or Docker()
    for container_id, name in owned.items():
        if _is_name(name):  # a label names the cache file: never let it be a path
            _addrcache.forget(name, container_id)
    # The forks in these containers end with them: their markers go too (_forking.py).
    markers = [m for m, source in docker.fork_markers().items() if source in owned]
    docker.rm(*dict.fromkeys([*owned, *markers]))


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
    """``_gc`` on every configured engine (or ``docker``); one that does not answer
    is named in ``failed``."""
    answers = engines.ask(
        _engines(docker), lambda e: _gc(e, dry_run, all_images, idle_for), timeout=600
    )
    done = [a.value for a in answers if a.value is not None]
    unreachable = tuple(f"engine {line}" for line in engines.unreachable(answers))
    return GcReport(
        containers=tuple(c for r in done for c in r.containers),
        images=tuple(i for r in done for i in r.images),
        kept_images=tuple(i for r in done for i in r.kept_images),
        failed=tuple(f for r in done for f in r.failed) + unreachable,
        dry_run=dry_run, volumes=tuple(v for r in done for v in r.volumes),
        reaped=tuple(x for r in done for x in r.reaped),
    )  # fmt: skip


def _gc(docker: Docker, dry_run: bool, all_images: bool, idle_for: float | None) -> GcReport:
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
