"""ContainerSession: the one place where codeexec's behaviour lives.

The class and its lifecycle verbs are here; running code is in ``_executing.py``,
files and installs in ``_transfer.py`` and ``_filetree.py``, shell commands in ``_commands.py`` (all
mixins), and the decisions of ``start``/``attach`` in ``_start.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import replace as _replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _addrcache, _forking, _start, engines
from ._channel import LOST_SETTLE as LOST_SETTLE, Channel, Connect
from ._checkpointing import Checkpointing
from ._commands import Commands
from ._filetree import FileTree
from ._transfer import MAX_FILE_BYTES as MAX_FILE_BYTES, SITE_DIR as SITE_DIR
from .docker import Docker
from .errors import DockerNotAvailable, NoSuchSession
from .models import ResultLimits, SessionInfo, SessionRef, Transport
from .options import (  # re-exported: callers import them from here
    DEFAULT_IDLE_TIMEOUT as DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_LIFETIME as DEFAULT_MAX_LIFETIME,
    READY_TIMEOUT as READY_TIMEOUT,
    SessionOptions,
    validate_lifetime as validate_lifetime,
    validate_name as validate_name,
)

if TYPE_CHECKING:  # loads when a session starts with a pool
    from ._snapstore import Snapshot
    from .pool import WarmPool


def list_sessions(*, docker: Docker | None = None) -> list[SessionInfo]:
    """Every running or stopped codeexec session, found through Docker labels, on
    ``docker`` or every configured engine that answers (``info.engine`` says which)."""
    everywhere = [docker] if docker is not None else engines.configured()
    answers = engines.ask(everywhere, engines.sessions_on)
    return sorted((s for a in answers for s in a.value or []), key=lambda s: (s.name, s.engine))


class ContainerSession(FileTree, Commands, Checkpointing):
    """A Python namespace that lives in a Docker container and persists between executions.

    Create one with :meth:`start` (builds or reuses the image, starts the container)
    or :meth:`attach` (connects to a running session, e.g. from another process).
    Use it as a context manager to stop it on exit. ``created`` says whether
    ``start`` made its container (False: it attached to a running one).
    """

    def __init__(
        self, *, name: str, ref: SessionRef, docker: Docker, timeout: float | None = None,
        output_limit: int | None = None, result_limits: ResultLimits | None = None,
        transport: Transport = "auto", connect: Connect | None = None,
        channel: Channel | None = None,
    ) -> None:  # fmt: skip
        self.name = name
        self._docker = docker
        self._info: SessionInfo = ref.info
        self.container_id: str = ref.id
        self.default_timeout = timeout
        self.output_limit = output_limit
        self.result_limits = result_limits
        self._channel = channel or Channel(
            name=name, ref=ref, docker=docker, transport=transport, connect=connect
        )
        self.created = False
        self._stopped = False
        self.resume_failures: dict[str, str] = {}  # names a portable resume could not load

    def __repr__(self) -> str:
        return (
            f"ContainerSession(name={self.name!r}, container={self.info.container_name!r}, "
            f"image={self.info.image!r})"
        )

    # -- lifecycle ----------------------------------------------------------------
    @classmethod
    def start(
        cls,
        name: str = "default",
        options: SessionOptions | None = None,
        *,
        replace: bool = False,
        pool: int | WarmPool = 0,
        on_progress: Callable[[str], None] | None = None,
        docker: Docker | None = None,
        connect: Connect | None = None,
        engine: str | None = None,
        **overrides: Any,
    ) -> ContainerSession:
        """Build (or reuse) the image and start the session's container.

        If a session of that name already runs with the same settings, it is
        attached instead (``start`` is idempotent; ``created`` is then False).

        Args:
            name: the session's name, unique on this Docker engine.
            options: a ``SessionOptions`` with every setting; keyword ``overrides``
                replace single ones: ``dependencies``, ``requirements_file``,
                ``base_image``, ``network``, ``memory``/``cpus``/``pids`` (or
                ``limits``), ``timeout``, ``idle_timeout``, ``max_lifetime``,
                ``output_limit``, ``result_limits``, ``allow_urls``, ``runtime``,
                ``read_only``, ``transport``, ``scope``, ``build_timeout``,
                ``ready_timeout``, ``env`` (the session's environment variables)
                (see ``SessionOptions`` and docs/python-api.md).
            replace: when the name runs with other settings, remove that container
                and start a new one (default: raise ``SessionExists``).
            pool: keep this many containers with the same options pre-started in a
                process-wide warm pool (``codeexec.pool``), so that later starts
                claim one in tens of milliseconds; or a ``WarmPool`` to claim from
                (its settings apply). 0 (default): no pool.
            on_progress: receives build and start progress lines.
            engine: the configured engine (``CODEEXEC_ENGINES``, ``codeexec.engines``)
                to start on; default: where the name runs already, else the least
                loaded engine. A name is unique across the engines.
            docker, connect: the docker CLI and the executor connection (injected in
                tests; see ``_channel.Connect``).

        Two processes starting one name at once make one container: a per-name
        lock (``_addrcache.session_lock``) spans the lookup and the start.

        Raises:
            InvalidDependency: a dependency is not a plain requirement (nothing was built).
            InvalidOption: a limit, network or base image is malformed or would remove
                isolation (``host``, ``container:…``, no limit); nothing ran.
            SessionExists: the name runs with other settings (the message names them)
                and ``replace`` is False, or (with ``scope``) in another scope.
            ImageBuildError: the image build failed; ``log_tail`` holds its end.
            ContainerStartError: the container did not start or never answered.
            DockerNotAvailable: no docker CLI or engine.
        """
        validate_name(name)
        options = SessionOptions.of(options, **overrides)
        if docker is None and not isinstance(pool, int):
            docker = pool.docker  # a pool's containers run on its engine
        everywhere = [docker] if docker is not None else engines.configured()
        if engine is not None:
            engines.named(engine, everywhere)  # a clear error before any docker call
        if len(everywhere) == 1 and engine is None:
            return _start.start(
                cls, name, options, docker=everywhere[0], pool=pool, replace=replace,
                connect=connect, on_progress=on_progress,
            )  # fmt: skip
        return _start.start(
            cls, name, options, docker=lambda: engines.place(name, everywhere, engine),
            pool=pool, replace=replace, connect=connect, on_progress=on_progress,
        )  # fmt: skip

    @classmethod
    def attach(
        cls,
        name: str = "default",
        *,
        timeout: float | None = None,
        output_limit: int | None = None,
        result_limits: ResultLimits | None = None,
        transport: Transport = "auto",
        docker: Docker | None = None,
        scope: str | None = None,
        connect: Connect | None = None,
    ) -> ContainerSession:
        """Connect to a running session by name (e.g. one another process started).

        With ``scope``, a session labelled with another scope (or none) is treated
        as absent: the error is the same as for a name that does not run at all.
        ``timeout`` and ``output_limit`` default to those the session was started with.

        Raises:
            NoSuchSession: no running session has that name (in ``scope``).
        """

        def on(engine: Docker) -> ContainerSession:
            return _start.attach(
                cls, name, docker=engine, scope=scope, connect=connect, timeout=timeout,
                output_limit=output_limit, result_limits=result_limits, transport=transport,
            )  # fmt: skip

        if docker is not None:
            return on(docker)
        remembered = engines.for_session(name)
        try:
            return on(remembered)
        except (NoSuchSession, DockerNotAvailable):  # the cache's engine no longer has it
            found = engines.for_session(name, hint=False)
            if found is remembered or found.engine == remembered.engine:
                raise  # the same engine: its answer (an impostor's note included) stands
            return on(found)

    def snapshot(
        self, name: str | None = None, *, method: str = "auto", stop: bool = False
    ) -> Snapshot:
        """Save the whole session so that it can be stopped and resumed later, or forked.

        Args:
            name: the snapshot's name (default: ``<session>-<date>-<time>``).
            method: ``"auto"`` (default: ``"checkpoint"`` where the engine can
                checkpoint this session, else ``"portable"``), or one of them.
            stop: stop the session once it is saved.

        Returns the ``Snapshot`` (``method`` says which was used; ``unsaved`` names
        what a portable snapshot could not pickle). See docs/snapshots.md.

        Raises:
            SnapshotError: the name is taken or invalid, or the method is impossible here.
        """
        from . import snapshot

        return snapshot.take(self, name, method=method, stop=stop, docker=self._docker)

    @classmethod
    def resume(
        cls, snapshot: Snapshot | str, name: str | None = None, *,
        transport: Transport = "auto", docker: Docker | None = None,
        on_progress: Callable[[str], None] | None = None, connect: Connect | None = None,
    ) -> ContainerSession:  # fmt: skip
        """Start a new session from a snapshot (or its name); resumable many times.

        ``name`` defaults to the snapshot's session. A checkpoint resumes every
        process as it was; a portable snapshot starts a fresh session with the same
        settings and loads /workspace and the namespace (names that fail to load are
        in ``resume_failures``). A failure leaves no container behind.

        Raises:
            SnapshotError: missing, corrupt (bad checksum), or unusable on this engine.
            SessionExists: a session of that name runs already.
        """
        from . import snapshot as snapshots

        return snapshots.resume(cls, snapshot, name, docker=docker or Docker(),
                                transport=transport, on_progress=on_progress,
                                connect=connect)  # fmt: skip

    @classmethod
    def list_sessions(cls, *, docker: Docker | None = None) -> list[SessionInfo]:
        """Every codeexec session on ``docker`` or every configured engine."""
        return list_sessions(docker=docker)

    def stop(self) -> None:
        """Remove the session's container. Idempotent; a gone container is not an error."""
        if self._stopped:
            return
        self._stopped = True
        if self._channel.ref.branch:  # a fork: its branch ends, the container stays
            self._channel.close(interrupt=True)
            _forking.stop_fork(self._docker, self._channel.ref, self._close_fork)
            return
        self._channel.close(interrupt=True)
        _addrcache.forget(self.name, self.container_id)
        markers = _forking.markers_in(self._docker, self.container_id) if self._forked else []
        self._docker.rm(self.container_id, *markers)

    def _close_fork(self, branch: str) -> None:
        replace_ref = dataclasses.replace(self._channel.ref, branch="")
        channel = Channel(
            name=self.name, ref=replace_ref, docker=self._docker, transport=self.transport
        )
        try:
            with channel.using() as client:
                client.close_fork(branch)
        finally:
            channel.close()

    def close(self) -> None:
        """Drop the connection but leave the container running."""
        self._channel.close()

    def __enter__(self) -> ContainerSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def info(self) -> SessionInfo:
        """What Docker knows of the session, with its ``engine`` and ``route``."""
        return _replace(self._info, engine=self._docker.name, route=self.route)

    @property
    def transport(self) -> Transport:
        """``"tcp"`` or ``"exec"`` (``"auto"`` until the first connection decides)."""
        return self._channel.transport

    @property
    def route(self) -> str:
        """How the executor is reached: ``"bridge"`` (the container's own address,
        when this host reaches it), ``"published"`` (the published port, through
        docker-proxy), ``"exec"`` (the ``docker exec`` relay), or ``""`` before the
        first connection."""
        return "exec" if self.transport == "exec" else self._channel.ref.route

    def is_running(self) -> bool:
        """Whether the container still runs (one docker call)."""
        return self._channel.is_running()

    def logs(self, tail: int | None = 200) -> str:
        """The container's log (the executor's own messages, not the code's output)."""
        return self._docker.logs(self.container_id, tail=tail)

    def _rebind(self, ref: SessionRef, channel: Channel) -> None:
        """Continue in another container (a checkpoint snapshot resumed in place)."""
        self._channel.close()
        self._channel, self._info, self.container_id = channel, ref.info, ref.id
        self._remember()

    def _remember(self) -> None:
        ref = self._channel.ref
        if self.transport == "exec" and ref.route == "exec":
            # The caller chose the relay: that says nothing of how this host reaches
            # the session, so the next attach (codeexec exec, ls) finds the route again.
            ref = _replace(ref, route="")
        if _start.remembers(ref, self.name):  # not claimed pool containers
            _addrcache.remember(self.name, ref)
