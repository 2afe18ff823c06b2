"""Warm pool: containers started ahead of time, so a session starts in milliseconds.

A pool container is an ordinary session container (same image, limits, secure
defaults and idle timeout) that carries the label ``codeexec.pool=1`` and no
session label, under the name ``codeexec_pool_<hex>``. The pool holds an
authenticated connection to each one, so a claim needs no handshake.

Claiming gives the container its session identity. Docker cannot change the labels
of a running container, so the identity goes into its *name*: the claim is one
``docker rename`` to ``codeexec-<session name>-<6 hex>``, and ``docker.py`` reads
the session name back from that name for containers labelled ``codeexec.pool``
(``list_sessions``, ``attach`` and ``codeexec ls`` see a claimed container like any
other session; an unclaimed one has no session name and is invisible to them).
A pool only claims containers it started itself, under its own lock, so two claims
never race for one container; other processes never see unclaimed containers as
sessions.

While the pool lives it pings its idle containers now and then (which keeps them
warm); if the process dies without :meth:`WarmPool.close`, they exit on their own
after ``idle_timeout`` (and ``--rm`` removes them).

Use it directly::

    with WarmPool(dependencies=["numpy"], size=2) as pool:
        session = pool.session("analysis")     # claims a warm one, or starts one
        ...

or through ``ContainerSession.start(name, pool=2)``, which keeps one process-wide
pool per image and options (closed at interpreter exit).
"""

from __future__ import annotations

import atexit
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from . import images
from ._channel import Transport
from .docker import Docker
from .errors import CodeexecError, DockerError
from .models import Limits, check_network
from .session import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_LIFETIME,
    READY_TIMEOUT,
    ContainerSession,
    validate_lifetime,
)

log = logging.getLogger("codeexec")

KEEPALIVE = 60.0  # seconds between pings of idle pool containers
_RETRY_DELAY = 5.0  # after a failed fill, before the next attempt


class WarmPool:
    """Keeps ``size`` containers of one image and option set started and connected.

    Args:
        dependencies, base_image, network, limits, idle_timeout, max_lifetime, runtime,
        read_only, scope: as for :meth:`ContainerSession.start`; every claimed session
            gets them (labels are fixed when a container starts, so the scope is the
            pool's). A container's lifetime counts from its start in the pool.
        size: how many warm containers to keep (0 keeps none: every claim misses).
        docker: the docker CLI wrapper (injected in tests).

    Raises (from :meth:`start`):
        InvalidDependency, ImageBuildError, DockerError: as ``ContainerSession.start``.
    """

    def __init__(
        self, *, dependencies: Sequence[str] = (), base_image: str | None = None,
        network: str = "bridge", limits: Limits | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT, runtime: str | None = None,
        read_only: bool = True, size: int = 1, docker: Docker | None = None,
        build_timeout: float = images.BUILD_TIMEOUT, ready_timeout: float = READY_TIMEOUT,
        on_progress: Callable[[str], None] | None = None, scope: str | None = None,
        max_lifetime: float | None = DEFAULT_MAX_LIFETIME,
    ) -> None:  # fmt: skip
        self.dependencies = images.normalize_dependencies(dependencies)
        self.base_image = base_image
        self.network = check_network(network)
        self.limits = limits or Limits()
        self.idle_timeout = idle_timeout
        self.max_lifetime = validate_lifetime(max_lifetime)
        self.runtime = runtime
        self.read_only = read_only
        self.scope = scope
        self.size = max(0, int(size))
        self.image = ""  # the tag, known after start()
        self._docker = docker or Docker()
        self._build_timeout = build_timeout
        self._ready_timeout = ready_timeout
        self._on_progress = on_progress
        self._ready: deque[ContainerSession] = deque()
        self._starting = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.last_error: CodeexecError | None = None

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> WarmPool:
        """Build or find the image, then fill the pool in a background thread."""
        with self._cond:
            if self._thread is not None:
                return self
            if not self.image:
                self.image = images.ensure_image(
                    self._docker,
                    base_image=self.base_image,
                    dependencies=self.dependencies,
                    on_line=self._on_progress,
                    timeout=self._build_timeout,
                    limits=self.limits,
                    runtime=self.runtime,
                )
            self._thread = threading.Thread(
                target=self._fill_loop, name="codeexec-pool", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop refilling and remove every unclaimed container (claimed ones stay)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=READY_TIMEOUT + 30)  # a container start in flight ends
        with self._cond:
            doomed = list(self._ready)
            self._ready.clear()
        for session in doomed:
            session.close()
        try:
            self._docker.rm(*(s.container_id for s in doomed))
        except DockerError as exc:
            log.warning("could not remove warm pool containers: %s", exc)

    def __enter__(self) -> WarmPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ready(self) -> int:
        """How many warm containers wait to be claimed."""
        with self._cond:
            return len(self._ready)

    def wait_ready(self, count: int | None = None, timeout: float = 60.0) -> bool:
        """Block until ``count`` (default ``size``) containers are warm; False on timeout."""
        want = self.size if count is None else count
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < want and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return len(self._ready) >= want

    # -- claiming -------------------------------------------------------------------
    def claim(
        self,
        name: str,
        *,
        timeout: float | None = None,
        output_limit: int | None = None,
        transport: Transport = "auto",
    ) -> ContainerSession | None:
        """Turn a warm container into session ``name``; None when none is warm.

        The caller checks that no session of that name runs (``ContainerSession.start``
        does). Costs one ``docker rename``; the connection is already open.
        """
        while True:
            with self._cond:
                if not self._ready:
                    self._cond.notify_all()  # the filler may be waiting after an error
                    return None
                session = self._ready.popleft()
                self._cond.notify_all()  # refill
            claimed = self._claim_one(session, name, timeout, output_limit, transport)
            if claimed is not None:
                return claimed

    def session(
        self,
        name: str,
        *,
        timeout: float | None = None,
        output_limit: int | None = None,
        transport: Transport = "auto",
    ) -> ContainerSession:
        """Claim a warm container as session ``name``, or start one now if none is warm."""
        self.start()
        claimed = self.claim(name, timeout=timeout, output_limit=output_limit, transport=transport)
        if claimed is not None:
            return claimed
        return self._launch(name, timeout=timeout, output_limit=output_limit, transport=transport)

    def _claim_one(
        self,
        session: ContainerSession,
        name: str,
        timeout: float | None,
        output_limit: int | None,
        transport: Transport,
    ) -> ContainerSession | None:
        new_name = f"codeexec-{name}-{secrets.token_hex(3)}"
        try:
            self._docker.rename(session.container_id, new_name)
        except DockerError as exc:  # gone (idle timeout, removed from outside)
            log.info("warm pool container %s unusable: %s", session.info.container_name, exc)
            session.close()
            self._docker.rm(session.container_id)
            return None
        session.name = name
        session.info = replace(session.info, name=name, container_name=new_name)
        session.default_timeout = timeout
        session.output_limit = output_limit
        if transport != "auto" and transport != session.transport:
            session.close()
            session.transport = transport
        return session

    # -- filling --------------------------------------------------------------------
    def _fill_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self._ready) + self._starting >= self.size:
                    if not self._cond.wait(KEEPALIVE):
                        break
                if self._closed:
                    return
                need = len(self._ready) + self._starting < self.size
                if need:
                    self._starting += 1
                idle = list(self._ready)
            if not need:
                self._keepalive(idle)
                continue
            session: ContainerSession | None = None
            try:
                session = self._launch()
            except CodeexecError as exc:
                self.last_error = exc
                log.warning("warm pool could not start a container: %s", exc)
            finally:
                with self._cond:
                    self._starting -= 1
                    if session is not None and not self._closed:
                        self._ready.append(session)
                        session = None
                    self._cond.notify_all()
                    if self.last_error is not None and session is None:
                        self._cond.wait(_RETRY_DELAY)
                        self.last_error = None
            if session is not None:  # closed while it started
                session.close()
                self._docker.rm(session.container_id)

    def _launch(self, name: str | None = None, **options: Any) -> ContainerSession:
        """A container from the pool's image: a session if ``name``, else a warm one."""
        return ContainerSession._launch(
            self._docker,
            tag=self.image,
            name=name,
            dependencies=self.dependencies,
            network=self.network,
            limits=self.limits,
            idle_timeout=self.idle_timeout,
            max_lifetime=self.max_lifetime,
            runtime=self.runtime,
            read_only=self.read_only,
            ready_timeout=self._ready_timeout,
            scope=self.scope,
            **options,
        )

    def _keepalive(self, idle: list[ContainerSession]) -> None:
        # Each one leaves the deque while it is pinged, so a claim never gets it mid-ping.
        for session in idle:
            with self._cond:
                if self._closed or session not in self._ready:
                    continue
                self._ready.remove(session)
                self._starting += 1
            alive = True
            try:
                session.ping()
            except CodeexecError:
                alive = False
            with self._cond:
                self._starting -= 1
                if alive and not self._closed:
                    self._ready.append(session)
                    session = None  # type: ignore[assignment]
                self._cond.notify_all()
            if session is not None:
                session.close()
                self._docker.rm(session.container_id)


# -- the process-wide pools behind ContainerSession.start(pool=N) -------------------

_shared: dict[tuple[Any, ...], WarmPool] = {}
_shared_lock = threading.Lock()


def shared_pool(
    *,
    docker: Docker,
    base_image: str | None,
    dependencies: Sequence[str],
    network: str,
    limits: Limits,
    idle_timeout: float | None,
    runtime: str | None,
    read_only: bool,
    size: int,
    max_lifetime: float | None = DEFAULT_MAX_LIFETIME,
    build_timeout: float = images.BUILD_TIMEOUT,
    on_progress: Callable[[str], None] | None = None,
    scope: str | None = None,
) -> WarmPool:
    """The process-wide pool for these options, started on first use (size grows only)."""
    base = base_image or images.default_base_image()
    key = (
        base,
        tuple(dependencies),
        network,
        limits,
        idle_timeout,
        max_lifetime,
        runtime,
        read_only,
        scope,
    )
    with _shared_lock:
        pool = _shared.get(key)
        if pool is None:
            if not _shared:
                atexit.register(close_shared_pools)
            pool = WarmPool(
                dependencies=dependencies,
                base_image=base,
                network=network,
                limits=limits,
                idle_timeout=idle_timeout,
                max_lifetime=max_lifetime,
                runtime=runtime,
                read_only=read_only,
                size=size,
                docker=docker,
                build_timeout=build_timeout,
                on_progress=on_progress,
                scope=scope,
            )
            _shared[key] = pool
        elif size > pool.size:
            with pool._cond:
                pool.size = size
                pool._cond.notify_all()
    return pool.start()


def close_shared_pools() -> None:
    """Close every pool made by ``ContainerSession.start(pool=N)`` (runs at exit)."""
    with _shared_lock:
        pools = list(_shared.values())
        _shared.clear()
    for pool in pools:
        pool.close()
