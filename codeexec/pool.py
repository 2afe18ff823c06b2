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
        session = ContainerSession.start("analysis", pool=pool)  # claims a warm one
        ...

or through ``ContainerSession.start(name, pool=2)``, which keeps one process-wide
pool per ``SessionOptions`` (closed at interpreter exit). The pool hands out
``Launched`` containers (``claim``, ``launch``); ``ContainerSession`` turns one into
a session, so this module never imports the session's.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import _launcher
from ._channel import Connect
from ._launcher import Launched
from .docker import Docker
from .errors import CodeexecError, DockerError
from .models import Transport
from .options import SessionOptions

log = logging.getLogger("codeexec")

KEEPALIVE = 60.0  # seconds between pings of idle pool containers
_RETRY_DELAY = 5.0  # after a failed fill, before the next attempt


class WarmPool:
    """Keeps ``size`` containers of one image and option set started and connected.

    Args:
        options: the ``SessionOptions`` every container is started with (keywords
            such as ``dependencies=`` or ``idle_timeout=`` override them, as for
            :meth:`ContainerSession.start`). Labels are fixed when a container
            starts, so a claimed session has the pool's scope; its lifetime counts
            from its start in the pool.
        size: how many warm containers to keep (0 keeps none: every claim misses).
        docker: the docker CLI wrapper (injected in tests); ``connect`` likewise.

    Raises (from :meth:`start`):
        InvalidDependency, ImageBuildError, DockerError: as ``ContainerSession.start``.
    """

    def __init__(
        self, options: SessionOptions | None = None, *, size: int = 1,
        docker: Docker | None = None, on_progress: Callable[[str], None] | None = None,
        connect: Connect | None = None, **overrides: Any,
    ) -> None:  # fmt: skip
        self.options = SessionOptions.of(options, **overrides)
        self.size = max(0, int(size))
        self.image = ""  # the tag, known after start()
        self._docker = self.docker = docker or Docker()  # the engine it starts on
        self._on_progress = on_progress
        self._connect = connect
        self._ready: deque[Launched] = deque()
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
                self.image = _launcher.ensure_image(
                    self._docker, self.options, on_line=self._on_progress
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
            # a container start in flight ends
            thread.join(timeout=self.options.ready_timeout + 30)
        with self._cond:
            doomed = list(self._ready)
            self._ready.clear()
        for warm in doomed:
            warm.channel.close()
        try:
            self._docker.rm(*(w.ref.id for w in doomed))
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

    def grow(self, size: int) -> None:
        """Keep at least ``size`` containers warm from now on (never shrinks)."""
        with self._cond:
            if size > self.size:
                self.size = size
                self._cond.notify_all()

    # -- claiming -------------------------------------------------------------------
    def claim(self, name: str, *, transport: Transport = "auto") -> Launched | None:
        """Turn a warm container into session ``name``; None when none is warm.

        The caller checks that no session of that name runs (``ContainerSession.start``
        does, and turns the result into a session). Costs one ``docker rename``; the
        connection is already open.
        """
        while True:
            with self._cond:
                if not self._ready:
                    self._cond.notify_all()  # the filler may be waiting after an error
                    return None
                warm = self._ready.popleft()
            try:
                claimed = _launcher.claim(self._docker, warm, name, transport)
            finally:
                with self._cond:  # refill once the claim is done, not racing it for the engine
                    self._cond.notify_all()
            if claimed is not None:
                return claimed

    def launch(self, name: str | None = None, *, transport: Transport = "auto") -> Launched:
        """Start a container from the pool's image now: session ``name``, or a warm one."""
        self.start()
        options = self.options
        if transport != options.transport:
            options = SessionOptions.of(options, transport=transport)
        return _launcher.launch(
            self._docker, options, image=self.image, name=name, connect=self._connect
        )

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
            warm: Launched | None = None
            try:
                warm = self.launch()
            except CodeexecError as exc:
                self.last_error = exc
                log.warning("warm pool could not start a container: %s", exc)
            finally:
                with self._cond:
                    self._starting -= 1
                    if warm is not None and not self._closed:
                        self._ready.append(warm)
                        warm = None
                    self._cond.notify_all()
                    if self.last_error is not None and warm is None:
                        self._cond.wait(_RETRY_DELAY)
                        self.last_error = None
            if warm is not None:  # closed while it started
                warm.discard(self._docker)

    def _keepalive(self, idle: list[Launched]) -> None:
        # Each one leaves the deque while it is pinged, so a claim never gets it mid-ping.
        for warm in idle:
            with self._cond:
                if self._closed or warm not in self._ready:
                    continue
                self._ready.remove(warm)
                self._starting += 1
            alive = True
            try:
                warm.channel.client().ping()
            except CodeexecError:
                alive = False
            with self._cond:
                self._starting -= 1
                kept = alive and not self._closed
                if kept:
                    self._ready.append(warm)
                self._cond.notify_all()
            if not kept:
                warm.discard(self._docker)


# -- the process-wide pools behind ContainerSession.start(pool=N) -------------------

_shared: dict[str, WarmPool] = {}
_shared_lock = threading.Lock()


def shared_pool(
    options: SessionOptions,
    *,
    size: int,
    docker: Docker,
    on_progress: Callable[[str], None] | None = None,
    connect: Connect | None = None,
) -> WarmPool:
    """The process-wide pool for these options, started on first use (size grows only)."""
    options = SessionOptions.of(options, base_image=options.image_base)
    key = f"{options.pool_key()}\0{docker.engine}"  # one pool per engine
    with _shared_lock:
        pool = _shared.get(key)
        if pool is None:
            if not _shared:
                atexit.register(close_shared_pools)
            pool = WarmPool(
                options, size=size, docker=docker, on_progress=on_progress, connect=connect
            )
            _shared[key] = pool
        else:
            pool.grow(size)
    return pool.start()


def close_shared_pools() -> None:
    """Close every pool made by ``ContainerSession.start(pool=N)`` (runs at exit)."""
    with _shared_lock:
        pools = list(_shared.values())
        _shared.clear()
    for pool in pools:
        pool.close()
