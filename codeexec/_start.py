"""How ``ContainerSession.start`` and ``attach`` find, compare, launch or claim a session.

``session.py`` keeps the class and its verbs; this module keeps the decisions of
starting: attach to a running session whose settings match, refuse one that
differs (or replace it when asked), claim from a warm pool, or build and launch.
The class is passed in (``cls``), so nothing here imports ``session.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from . import _addrcache, _forking
from ._background import in_background
from ._channel import Channel, Connect
from ._launcher import Launched
from .docker import LABEL_SCOPE, LABEL_SESSION, Docker, check_descriptors
from .errors import CodeexecError, HandshakeError, NoSuchSession, SessionExists
from .models import ResultLimits, SessionRef, Transport
from .options import SessionOptions, validate_name

if TYPE_CHECKING:  # pool and _launcher load when a session starts: attach is quick
    from concurrent.futures import Future

    from .pool import WarmPool
    from .session import ContainerSession

_S = TypeVar("_S", bound="ContainerSession")


def start(
    cls: type[_S],
    name: str,
    options: SessionOptions,
    *,
    docker: Docker | Callable[[], Docker],
    pool: int | WarmPool = 0,
    replace: bool = False,
    connect: Connect | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> _S:
    """``ContainerSession.start`` (see there), under the name's lock."""
    check_descriptors()  # a clear error before any docker call, not EMFILE halfway
    with _addrcache.session_lock(validate_name(name), on_progress):
        # Several engines: the one to use is chosen under the name's lock (engines.place).
        engine = docker if isinstance(docker, Docker) else docker()
        return _start(cls, name, options, engine, pool, replace, connect, on_progress)


def _start(
    cls: type[_S], name: str, options: SessionOptions, docker: Docker, pool: int | WarmPool,
    replace: bool, connect: Connect | None, on_progress: Callable[[str], None] | None,
) -> _S:  # fmt: skip
    from . import _launcher
    from .pool import WarmPool, shared_pool

    if isinstance(pool, WarmPool):  # the pool's containers carry the pool's settings
        options = SessionOptions.of(
            pool.options, timeout=options.timeout, output_limit=options.output_limit,
            result_limits=options.result_limits, transport=options.transport,
        )  # fmt: skip
    # The image lookup (two docker calls) overlaps the session lookup (one); so does a
    # warm pool's claim (one `docker rename`), discarded if that name runs already.
    lookup = (
        None
        if pool
        else in_background(lambda: _launcher.find_image(docker, options), "codeexec-lookup")
    )
    warm: WarmPool | None = None
    claiming: Future[Launched | None] | None = None
    if pool:
        warm = pool if isinstance(pool, WarmPool) else shared_pool(
            options, size=pool, docker=docker, on_progress=on_progress, connect=connect
        )  # fmt: skip
        claiming = in_background(
            partial(warm.claim, name, transport=options.transport), "codeexec-lookup"
        )
    claimed: Launched | None = None
    try:
        try:
            candidates = docker.session_candidates(name)
        finally:
            claimed = claiming.result() if claiming is not None else None
        own = claimed.ref.id if claimed is not None else None
        found = docker.inspect_session(name, [c for c in candidates if c != own])
        running = next((r for r in found if r.running), None)
        session = None
        if running is not None:
            session = _running(cls, name, running, docker, options, replace, connect)
    except BaseException:
        if claimed is not None:
            claimed.discard(docker)
        raise
    if session is not None:
        if claimed is not None:
            claimed.discard(docker)
        return session
    if warm is not None:
        launched = claimed
        tag = warm.start().image  # the pool built (or found) it: no second lookup
    else:
        assert lookup is not None
        launched = None
        tag = _launcher.ensure_image(docker, options, on_line=on_progress, found=lookup.result())
    if launched is None:
        launched = _launcher.launch(
            docker, options, image=tag, name=name, connect=connect, on_progress=on_progress
        )
    session = _make(cls, name, launched.ref, docker, options, connect, launched.channel)
    session._remember()
    return session


def _running(
    cls: type[_S], name: str, running: SessionRef, docker: Docker, options: SessionOptions,
    replace: bool, connect: Connect | None,
) -> _S | None:  # fmt: skip
    """The session ``name`` that runs already, or None once ``replace`` removed it."""
    if options.scope is not None and running.labels.get(LABEL_SCOPE) != options.scope:
        raise SessionExists(
            f"session {name!r} already runs outside this scope ({options.scope!r}) and "
            "may not be used from here; choose another name"
        )
    differences = options.differences(running)
    if not differences:
        session = _make(cls, name, running, docker, options, connect)
        session._remember()
        return session
    if not replace:
        said = f"session {name!r} already runs with other settings: {'; '.join(differences)}"
        raise SessionExists(
            f"{said}; stop it first (`codeexec stop {name}`), replace it (`codeexec start "
            f"--replace {name}`, replace=True), or choose another name",
            cli_message=f"{said}; stop it first (`codeexec stop {name}`), replace it "
            f"(`codeexec start --replace {name}`), or choose another name",
        )
    _addrcache.forget(name, running.id)
    docker.rm(running.id)
    return None


def attach(
    cls: type[_S],
    name: str,
    *,
    docker: Docker,
    scope: str | None,
    connect: Connect | None,
    timeout: float | None,
    output_limit: int | None,
    result_limits: ResultLimits | None,
    transport: Transport,
) -> _S:
    """``ContainerSession.attach`` (see there)."""
    validate_name(name)

    def make(ref: SessionRef) -> _S:  # unset: the defaults its start recorded
        return cls(
            name=name, ref=ref, docker=docker, connect=connect,
            timeout=ref.settings.get("timeout") if timeout is None else timeout,
            output_limit=output_limit or ref.settings.get("output_limit"),
            result_limits=result_limits, transport=transport,
        )  # fmt: skip

    cached = _addrcache.recall(name)
    impostor: HandshakeError | None = None
    if cached is not None and _in_scope(cached, scope):
        # The executor at the remembered address proving it knows the remembered
        # token makes it the same session: no docker call at all
        # (docs/performance.md). Until it has, it is sent nothing but a nonce.
        session = make(cached)
        try:
            session._channel.client(time.monotonic() + 1.0, check_gone=False)
            if session._channel.ref.route != cached.route:
                session._remember()  # the cache keeps the address actually used
            return session
        except CodeexecError as exc:
            impostor = exc if isinstance(exc, HandshakeError) else None
            session._channel.close()
            _addrcache.forget(name)
    ref = find_running(docker, name) or _forking.resolve(docker, name)
    if ref is None or not _in_scope(ref, scope):
        note = (
            " (a program that is not its executor now answers on its last known "
            "address; it was sent nothing but a random nonce)"
            if impostor is not None
            else ""
        )
        tail = f"; `codeexec ls` lists the running ones{note}"
        raise NoSuchSession(
            f"no running session named {name!r}: start one with "
            f"`codeexec start {name}` or ContainerSession.start({name!r}){tail}",
            cli_message=f"no running session named {name!r}: start one with "
            f"`codeexec start {name}`{tail}",
        ) from impostor
    session = make(ref)
    session._channel.client()
    session._remember()
    return session


def find_running(docker: Docker, name: str) -> SessionRef | None:
    """The running container of session ``name``, if any (``Docker.find_session``)."""
    found = docker.find_session(name)
    return found[0] if found and found[0].running else None


def _make(
    cls: type[_S], name: str, ref: SessionRef, docker: Docker, options: SessionOptions,
    connect: Connect | None, channel: Channel | None = None,
) -> _S:  # fmt: skip
    """The session object; ``channel`` (an open connection) means this start created it."""
    session = cls(
        name=name, ref=ref, docker=docker, connect=connect, timeout=options.timeout,
        output_limit=options.output_limit, result_limits=options.result_limits,
        transport=options.transport, channel=channel,
    )  # fmt: skip
    session.created = channel is not None
    return session


def _in_scope(ref: SessionRef, scope: str | None) -> bool:
    return scope is None or ref.labels.get(LABEL_SCOPE) == scope


def remembers(ref: SessionRef, name: str) -> bool:
    """Whether the address cache should keep ``ref`` (not for unclaimed pool containers)."""
    return ref.labels.get(LABEL_SESSION) == name
