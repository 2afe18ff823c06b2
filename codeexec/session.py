"""ContainerSession: the one place where codeexec's behaviour lives."""

from __future__ import annotations

import functools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, TypeVar, cast

from . import _addrcache, images, models
from ._channel import Channel, Transport
from ._dockerargs import session_run_spec
from ._transfer import MAX_FILE_BYTES as MAX_FILE_BYTES, SITE_DIR as SITE_DIR, FilesAndPackages
from .client import ExecutorClient
from .docker import LABEL_MANAGED, LABEL_SCOPE, LABEL_SESSION, Docker, parse_inspect
from .errors import (
    CodeexecError,
    ConnectionLost,
    HandshakeError,
    NoSuchSession,
    SessionBusy,
    SessionExists,
    register_secret,
)
from .models import Display, ExecResult, Limits, ResultLimits, SessionInfo, StreamEvent

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])
DEFAULT_IDLE_TIMEOUT = 3600.0
DEFAULT_MAX_LIFETIME = 24 * 3600.0
READY_TIMEOUT = 30.0
LOST_SETTLE = 3.0  # seconds for a container whose executor died to show as stopped
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CodeexecError(
            f"invalid session name {name!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_lifetime(max_lifetime: float | None) -> float | None:
    """``max_lifetime`` as seconds (None: no limit), or a clear error."""
    if max_lifetime is None:
        return None
    if isinstance(max_lifetime, bool) or not isinstance(max_lifetime, int | float):
        raise CodeexecError(f"max_lifetime must be a number of seconds, not {max_lifetime!r}")
    if not max_lifetime >= 0:
        raise CodeexecError(
            f"max_lifetime must be >= 0 seconds (0 or None: no limit), not {max_lifetime}"
        )
    return float(max_lifetime) or None


def list_sessions(*, docker: Docker | None = None) -> list[SessionInfo]:
    """Every running or stopped codeexec session, found through Docker labels."""
    docker = docker or Docker()
    return sorted(
        (s for s in docker.ps({LABEL_MANAGED: "1"}) if s.name),
        key=lambda s: s.name,
    )


def _one_start_per_name(start: _F) -> _F:
    """Hold the name's lock (``_addrcache.session_lock``) for the whole of ``start``."""

    @functools.wraps(start)
    def locked(cls: Any, name: str = "default", *args: Any, **kwargs: Any) -> Any:
        with _addrcache.session_lock(validate_name(name), kwargs.get("on_progress")):
            return start(cls, name, *args, **kwargs)

    return cast(_F, locked)


class ContainerSession(FilesAndPackages):
    """A Python namespace that lives in a Docker container and persists between executions.

    Create one with :meth:`start` (builds or reuses the image, starts the container)
    or :meth:`attach` (connects to a running session, e.g. from another process).
    Use it as a context manager to stop it on exit.
    """

    def __init__(
        self,
        *,
        name: str,
        container: dict[str, Any],
        docker: Docker,
        default_timeout: float | None = None,
        output_limit: int | None = None,
        result_limits: ResultLimits | None = None,
        transport: Transport = "auto",
    ) -> None:
        self.name = name
        self._docker = docker
        self.info: SessionInfo = parse_inspect(container)
        self.container_id: str = self.info.container_id
        self.default_timeout = default_timeout
        self.output_limit = output_limit
        self.result_limits = result_limits
        if transport == "auto":
            transport = "exec" if self.info.network == "none" else "tcp"
        self.transport: Transport = transport
        self._channel = Channel(name=name, container=container, docker=docker, transport=transport)
        self._exec_lock = threading.Lock()
        self._stopped = False

    def __repr__(self) -> str:
        return (
            f"ContainerSession(name={self.name!r}, container={self.info.container_name!r}, "
            f"image={self.info.image!r})"
        )

    # -- lifecycle ----------------------------------------------------------------
    @classmethod
    @_one_start_per_name
    def start(
        cls,
        name: str = "default",
        *,
        dependencies: Sequence[str] = (),
        requirements_file: str | None = None,
        base_image: str | None = None,
        network: str = "bridge",
        memory: str = "1g",
        cpus: float = 1.0,
        pids: int = 256,
        limits: Limits | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_lifetime: float | None = DEFAULT_MAX_LIFETIME,
        output_limit: int | None = None,
        result_limits: ResultLimits | None = None,
        allow_urls: bool = False,
        runtime: str | None = None,
        read_only: bool = True,
        transport: Transport = "auto",
        on_progress: Callable[[str], None] | None = None,
        build_timeout: float = images.BUILD_TIMEOUT,
        ready_timeout: float = READY_TIMEOUT,
        docker: Docker | None = None,
        pool: int = 0,
        scope: str | None = None,
    ) -> ContainerSession:
        """Build (or reuse) the image and start the session's container.

        If a session of that name already runs with the same dependencies, it is
        attached instead (``start`` is idempotent).

        Args:
            name: the session's name, unique on this Docker engine.
            dependencies: pip requirement strings, e.g. ``["numpy==2.*"]``.
            requirements_file: a requirements.txt whose lines are added to them.
            base_image: the image to build on (default ``$CODEEXEC_BASE_IMAGE`` or
                ``python:3.12-slim``).
            network: ``"bridge"`` (default), ``"none"`` (no network; frames go over
                ``docker exec``) or another docker network name.
            memory, cpus, pids: container limits (``limits`` overrides them).
            timeout: default per-execution timeout in seconds (None: no limit).
            idle_timeout: seconds without activity after which the container removes
                itself (None or 0: never).
            max_lifetime: seconds after the container's start after which it removes
                itself even if busy (default 24 h; None or 0: no limit). A warm pool
                container's clock starts when the pool starts it.
            output_limit: bytes of output kept per execution (default 16 MiB).
            result_limits: caps per execution on output, displays, the value and the
                traceback (``ResultLimits``); ``output_limit`` overrides its ``output``.
            allow_urls: accept URL requirements such as ``pkg @ https://…``.
            runtime: a docker runtime such as ``runsc`` (gVisor) for stronger isolation.
            read_only: keep the root filesystem read-only (default True).
            on_progress: receives build and start progress lines.
            pool: keep this many containers with the same image and options
                pre-started in a process-wide warm pool (``codeexec.pool``), so that
                later starts claim one in tens of milliseconds. 0 (default): no pool.
            scope: label the container ``codeexec.scope=<scope>`` and attach only to
                a running session of that scope (an MCP server's reach).

        Two processes starting one name at once make one container: a per-name
        lock (``_addrcache.session_lock``) spans the lookup and the start.

        Raises:
            InvalidDependency: a dependency is not a plain requirement (nothing was built).
            InvalidOption: a limit, network or base image is malformed or would remove
                isolation (``host``, ``container:…``, no limit); nothing ran.
            SessionExists: the name runs with other dependencies, or (with ``scope``)
                in another scope.
            ImageBuildError: the image build failed; ``log_tail`` holds its end.
            ContainerStartError: the container did not start or never answered.
            DockerNotAvailable: no docker CLI or engine.
        """
        validate_name(name)
        max_lifetime = validate_lifetime(max_lifetime)
        specs = list(dependencies) if not isinstance(dependencies, str) else [dependencies]
        if requirements_file:
            specs.extend(images.read_requirements_file(requirements_file))
        deps = images.normalize_dependencies(specs, allow_urls=allow_urls)
        docker = docker or Docker()
        limits = limits or Limits(memory=memory, cpus=cpus, pids=pids)  # validates them
        models.check_network(network)
        models.check_image_ref(base_image or images.default_base_image())
        # The image lookup (two docker calls) overlaps the session lookup (one).
        lookup = (
            None
            if pool > 0
            else _in_background(
                lambda: images.find_image(docker, base_image=base_image, dependencies=deps)
            )
        )
        existing = _find_running(docker, name)
        if existing is not None:
            info = parse_inspect(existing)
            if scope is not None and info.labels.get(LABEL_SCOPE) != scope:
                raise SessionExists(
                    f"session {name!r} already runs outside this scope ({scope!r}) and may "
                    "not be used from here; choose another name"
                )
            if info.dependencies != deps:
                raise SessionExists(
                    f"session {name!r} already runs with dependencies "
                    f"{list(info.dependencies) or 'none'}; stop it first "
                    f"(`codeexec stop {name}`) or choose another name"
                )
            session = cls(
                name=name,
                container=existing,
                docker=docker,
                default_timeout=timeout,
                output_limit=output_limit,
                result_limits=result_limits,
                transport=transport,
            )
            session._remember()
            return session
        if pool > 0:
            from .pool import shared_pool

            warm = shared_pool(
                docker=docker,
                base_image=base_image,
                dependencies=deps,
                network=network,
                limits=limits,
                idle_timeout=idle_timeout,
                max_lifetime=max_lifetime,
                runtime=runtime,
                read_only=read_only,
                size=pool,
                build_timeout=build_timeout,
                on_progress=on_progress,
                scope=scope,
            )
            claimed = warm.claim(
                name, timeout=timeout, output_limit=output_limit, transport=transport
            )
            if claimed is not None:
                claimed.result_limits = result_limits
                return claimed
            tag = warm.image  # the pool built (or found) it: no second lookup
        else:
            assert lookup is not None
            found = lookup.result()
            tag = found.tag if found.exists else images.build_image(
                docker, found, on_line=on_progress, timeout=build_timeout, limits=limits,
                runtime=runtime,
            )  # fmt: skip
        return cls._launch(
            docker,
            tag=tag,
            name=name,
            dependencies=deps,
            network=network,
            limits=limits,
            idle_timeout=idle_timeout,
            max_lifetime=max_lifetime,
            runtime=runtime,
            read_only=read_only,
            timeout=timeout,
            output_limit=output_limit,
            result_limits=result_limits,
            transport=transport,
            ready_timeout=ready_timeout,
            on_progress=on_progress,
            scope=scope,
        )

    @classmethod
    def _launch(
        cls, docker: Docker, *, tag: str, name: str | None, dependencies: Sequence[str],
        network: str, limits: Limits, idle_timeout: float | None, runtime: str | None,
        read_only: bool, timeout: float | None = None, output_limit: int | None = None,
        result_limits: ResultLimits | None = None,
        transport: Transport = "auto", ready_timeout: float = READY_TIMEOUT,
        on_progress: Callable[[str], None] | None = None, scope: str | None = None,
        max_lifetime: float | None = None,
    ) -> ContainerSession:  # fmt: skip
        """Run one container from ``tag`` and wait for its handshake.

        ``name=None`` makes an unclaimed warm-pool container (``pool.py``).
        """
        token = secrets.token_urlsafe(32)
        register_secret(token)
        spec = session_run_spec(
            image=tag,
            name=name,
            dependencies=dependencies,
            network=network,
            limits=limits,
            idle_timeout=idle_timeout,
            max_lifetime=max_lifetime,
            runtime=runtime,
            read_only=read_only,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            suffix=secrets.token_hex(3 if name is not None else 6),
            scope=scope,
        )
        if on_progress is not None:
            on_progress(f"starting container {spec.container_name}")
        container_id = docker.run(spec, {"CODEEXEC_TOKEN": token})
        try:
            data = docker.inspect(container_id)
            session = cls(
                name=name or "",
                container=data,
                docker=docker,
                default_timeout=timeout,
                output_limit=output_limit,
                result_limits=result_limits,
                transport=transport,
            )
            session._channel.wait_ready(ready_timeout)
        except BaseException:
            docker.rm(container_id)  # a failed start leaves no half-made session
            raise
        session._remember()
        return session

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
    ) -> ContainerSession:
        """Connect to a running session by name (e.g. one another process started).

        With ``scope``, a session labelled with another scope (or none) is treated
        as absent: the error is the same as for a name that does not run at all.

        Raises:
            NoSuchSession: no running session has that name (in ``scope``).
        """
        validate_name(name)
        docker = docker or Docker()
        options: dict[str, Any] = {
            "default_timeout": timeout,
            "output_limit": output_limit,
            "result_limits": result_limits,
            "transport": transport,
        }
        cached = _addrcache.recall(name)
        impostor: HandshakeError | None = None
        if cached is not None and not _in_scope(cached, scope):
            cached = None
        if cached is not None:
            # The executor at the remembered address proving it knows the remembered
            # token makes it the same session: no docker call at all
            # (docs/performance.md). Until it has, it is sent nothing but a nonce.
            session = cls(name=name, container=cached, docker=docker, **options)
            try:
                session._channel.client(time.monotonic() + 1.0, check_gone=False)
                return session
            except CodeexecError as exc:
                impostor = exc if isinstance(exc, HandshakeError) else None
                session._channel.close()
                _addrcache.forget(name)
        data = _find_running(docker, name)
        if data is None or not _in_scope(data, scope):
            note = (
                " (a program that is not its executor now answers on its last known "
                "address; it was sent nothing but a random nonce)"
                if impostor is not None
                else ""
            )
            raise NoSuchSession(
                f"no running session named {name!r}: start one with "
                f"`codeexec start {name}` or ContainerSession.start({name!r}); "
                f"`codeexec ls` lists the running ones{note}"
            ) from impostor
        session = cls(name=name, container=data, docker=docker, **options)
        session._channel.client()
        session._remember()
        return session

    @classmethod
    def list_sessions(cls, *, docker: Docker | None = None) -> list[SessionInfo]:
        """Every codeexec session on this engine, found through Docker labels."""
        return list_sessions(docker=docker)

    def stop(self) -> None:
        """Remove the session's container. Idempotent; a gone container is not an error."""
        if self._stopped:
            return
        self._stopped = True
        self._channel.close(interrupt=True)
        _addrcache.forget(self.name, self.container_id)
        self._docker.rm(self.container_id)

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

    def is_running(self) -> bool:
        """Whether the container still runs (one docker call)."""
        return self._channel.is_running()

    def logs(self, tail: int | None = 200) -> str:
        """The container's log (the executor's own messages, not the code's output)."""
        return self._docker.logs(self.container_id, tail=tail)

    # -- executing ----------------------------------------------------------------
    def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: Callable[[str, str], None] | None = None,
        output_limit: int | None = None,
        result_limits: ResultLimits | None = None,
    ) -> ExecResult:
        """Run ``code`` in the session's namespace and return its result.

        An exception in the code is data: ``status="error"`` with ``error`` set. On
        timeout the code is interrupted and the namespace kept; code that ignores
        the interrupt is ended by restarting the executor (``restarted=True``).

        Args:
            code: Python source; the value of a final expression is returned as ``value``.
            timeout: seconds before the code is interrupted (default: the session's).
            on_output: called with ``(stream_name, text)`` as output arrives.
            output_limit: bytes of output kept (default: the session's, else 16 MiB).
            result_limits: caps on output, displays, value and traceback (default: the
                session's, else ``ResultLimits()``); past a cap an item is replaced by a
                marker and the result says ``truncated``.

        Raises:
            SessionBusy: another execution runs in this session.
            NoSuchSession: the container is gone (stopped, removed or idle-timed out).
        """
        with self._exclusive():
            client = self._channel_client()
            try:
                return client.execute(
                    code,
                    timeout=self._timeout(timeout),
                    on_output=on_output,
                    output_limit=output_limit or self.output_limit,
                    limits=result_limits or self.result_limits,
                )
            except ConnectionLost as exc:
                self._channel.raise_if_gone(exc, settle=LOST_SETTLE)
                raise

    def execute_stream(
        self,
        code: str,
        *,
        timeout: float | None = None,
        output_limit: int | None = None,
        result_limits: ResultLimits | None = None,
    ) -> Iterator[StreamEvent | Display | ExecResult]:
        """Like :meth:`execute`, yielding output events as they come; the last is the result.

        Each event is already cut to the caps, and nothing is kept between them.
        """
        with self._exclusive():
            client = self._channel_client()
            try:
                yield from client.stream(
                    code,
                    timeout=self._timeout(timeout),
                    output_limit=output_limit or self.output_limit,
                    limits=result_limits or self.result_limits,
                )
            except ConnectionLost as exc:
                self._channel.raise_if_gone(exc, settle=LOST_SETTLE)
                raise

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in the running code (safe from another thread)."""
        client = self._channel.connected
        if client is not None:
            client.interrupt()

    def reset(self) -> None:
        """Start a fresh Python process in the container: every variable is dropped."""
        with self._exclusive():
            self._channel_client().reset()

    def idle_seconds(self) -> float | None:
        """Seconds since code last ran here (the idle timeout counts from then).

        Asks over a separate connection, so looking does not reset the idle timer.
        """
        if self._stopped:
            raise NoSuchSession(f"session {self.name!r} was stopped; start it again")
        try:
            idle = self._channel.probe().get("idle_seconds")
        except (ConnectionLost, HandshakeError) as exc:
            self._channel.raise_if_gone(exc)
            raise
        return float(idle) if isinstance(idle, (int, float)) else None

    def ping(self) -> dict[str, Any]:
        """Ask the executor for its state (``busy``) without running code."""
        return self._channel_client().ping()

    # -- internals ----------------------------------------------------------------
    def _timeout(self, timeout: float | None) -> float | None:
        return timeout if timeout is not None else self.default_timeout

    def _exclusive(self) -> _Exclusive:
        return _Exclusive(self)

    def _remember(self) -> None:
        if self.info.labels.get(LABEL_SESSION) == self.name:  # not claimed pool containers
            _addrcache.remember(self.name, self._channel.container)

    def _channel_client(self) -> ExecutorClient:
        if self._stopped:
            raise NoSuchSession(f"session {self.name!r} was stopped; start it again")
        return self._channel.client()


class _Exclusive:
    """One execution at a time per session object; a second caller gets SessionBusy."""

    def __init__(self, session: ContainerSession) -> None:
        self._session = session

    def __enter__(self) -> None:
        if not self._session._exec_lock.acquire(blocking=False):
            raise SessionBusy(
                f"session {self._session.name!r} is running another execution; wait for "
                "it to finish or call interrupt()"
            )

    def __exit__(self, *exc: object) -> None:
        self._session._exec_lock.release()


def _find_running(docker: Docker, name: str) -> dict[str, Any] | None:
    # Unclaimed pool containers carry no session name, so they never match.
    for data in docker.find_session(name):
        if (data.get("State") or {}).get("Running") and parse_inspect(data).name == name:
            return data
    return None


def _in_scope(container: dict[str, Any], scope: str | None) -> bool:
    return scope is None or parse_inspect(container).labels.get(LABEL_SCOPE) == scope


def _in_background(fn: Callable[[], _T]) -> Future[_T]:
    future: Future[_T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="codeexec-lookup", daemon=True).start()
    return future
