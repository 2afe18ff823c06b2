"""ContainerSession: the one place where codeexec's behaviour lives."""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Literal, TypeVar

from . import images
from .client import ExecutorClient
from .docker import (
    LABEL_CREATED,
    LABEL_DEPS,
    LABEL_IDLE,
    LABEL_MANAGED,
    LABEL_NETWORK,
    LABEL_POOL,
    LABEL_SESSION,
    POOL_CONTAINER_PREFIX,
    Docker,
    RunSpec,
    container_env,
    parse_inspect,
    published_port,
)
from .errors import (
    CodeexecError,
    ConnectionLost,
    ContainerStartError,
    DockerError,
    FileTransferError,
    HandshakeError,
    InvalidDependency,
    NoSuchSession,
    SessionBusy,
    SessionExists,
    register_secret,
)
from .models import Display, ExecResult, Limits, SessionInfo, StreamEvent

log = logging.getLogger("codeexec")

Transport = Literal["auto", "tcp", "exec"]
_T = TypeVar("_T")
DEFAULT_IDLE_TIMEOUT = 3600.0
READY_TIMEOUT = 30.0
LOST_SETTLE = 3.0  # seconds for a container whose executor died to show as stopped
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_RELAY = ("python", "-m", "codeexec_executor", "relay")
MAX_FILE_BYTES = 32 * 2**20  # one transfer travels in one frame (base64 inside 64 MiB)
SITE_DIR = "/tmp/.codeexec-site"  # runtime installs; on PYTHONPATH in the image
_INSTALL_CODE = """\
def __codeexec_install():
    import importlib, subprocess, sys
    rc = subprocess.call([sys.executable, "-m", "pip", "install", "--no-input",
                          "--disable-pip-version-check", "--no-cache-dir",
                          "--progress-bar", "off", "--target", {target!r}, *{packages!r}])
    if {target!r} not in sys.path:
        sys.path.insert(1, {target!r})
    sys.path_importer_cache.pop({target!r}, None)
    importlib.invalidate_caches()
    if rc:
        class InstallError(Exception):
            pass
        raise InstallError(f"pip exited with status {{rc}}: see the output above")
try:
    __codeexec_install()
finally:
    del __codeexec_install
"""


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CodeexecError(
            f"invalid session name {name!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def list_sessions(*, docker: Docker | None = None) -> list[SessionInfo]:
    """Every running or stopped codeexec session, found through Docker labels."""
    docker = docker or Docker()
    return sorted(
        (s for s in docker.ps({LABEL_MANAGED: "1"}) if s.name),
        key=lambda s: s.name,
    )


class ContainerSession:
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
        transport: Transport = "auto",
    ) -> None:
        self.name = name
        self._docker = docker
        self._inspect = container
        self.info: SessionInfo = parse_inspect(container)
        self.container_id: str = self.info.container_id
        self._token = container_env(container).get("CODEEXEC_TOKEN", "")
        register_secret(self._token)
        self.default_timeout = default_timeout
        self.output_limit = output_limit
        if transport == "auto":
            transport = "exec" if self.info.network == "none" else "tcp"
        self.transport: Transport = transport
        self._client: ExecutorClient | None = None
        self._connect_lock = threading.Lock()
        self._exec_lock = threading.Lock()
        self._stopped = False

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
        output_limit: int | None = None,
        allow_urls: bool = False,
        runtime: str | None = None,
        read_only: bool = True,
        transport: Transport = "auto",
        on_progress: Callable[[str], None] | None = None,
        build_timeout: float = images.BUILD_TIMEOUT,
        ready_timeout: float = READY_TIMEOUT,
        docker: Docker | None = None,
        pool: int = 0,
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
            output_limit: bytes of output kept per execution (default 16 MiB).
            allow_urls: accept URL requirements such as ``pkg @ https://…``.
            runtime: a docker runtime such as ``runsc`` (gVisor) for stronger isolation.
            read_only: keep the root filesystem read-only (default True).
            on_progress: receives build and start progress lines.
            pool: keep this many containers with the same image and options
                pre-started in a process-wide warm pool (``codeexec.pool``), so that
                later starts claim one in tens of milliseconds. 0 (default): no pool.

        Raises:
            InvalidDependency: a dependency is not a plain requirement (nothing was built).
            SessionExists: the name runs with other dependencies.
            ImageBuildError: the image build failed; ``log_tail`` holds its end.
            ContainerStartError: the container did not start or never answered.
            DockerNotAvailable: no docker CLI or engine.
        """
        validate_name(name)
        specs = list(dependencies) if not isinstance(dependencies, str) else [dependencies]
        if requirements_file:
            specs.extend(images.read_requirements_file(requirements_file))
        deps = images.normalize_dependencies(specs, allow_urls=allow_urls)
        docker = docker or Docker()
        limits = limits or Limits(memory=memory, cpus=cpus, pids=pids)
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
            if info.dependencies != deps:
                raise SessionExists(
                    f"session {name!r} already runs with dependencies "
                    f"{list(info.dependencies) or 'none'}; stop it first "
                    f"(`codeexec stop {name}`) or choose another name"
                )
            return cls(
                name=name,
                container=existing,
                docker=docker,
                default_timeout=timeout,
                output_limit=output_limit,
                transport=transport,
            )
        if pool > 0:
            from .pool import shared_pool

            warm = shared_pool(
                docker=docker,
                base_image=base_image,
                dependencies=deps,
                network=network,
                limits=limits,
                idle_timeout=idle_timeout,
                runtime=runtime,
                read_only=read_only,
                size=pool,
                build_timeout=build_timeout,
                on_progress=on_progress,
            )
            claimed = warm.claim(
                name, timeout=timeout, output_limit=output_limit, transport=transport
            )
            if claimed is not None:
                return claimed
            tag = warm.image  # the pool built (or found) it: no second lookup
        else:
            assert lookup is not None
            tag, exists = lookup.result()
            if not exists:
                tag = images.ensure_image(
                    docker,
                    base_image=base_image,
                    dependencies=deps,
                    on_line=on_progress,
                    timeout=build_timeout,
                )
        return cls._launch(
            docker,
            tag=tag,
            name=name,
            dependencies=deps,
            network=network,
            limits=limits,
            idle_timeout=idle_timeout,
            runtime=runtime,
            read_only=read_only,
            timeout=timeout,
            output_limit=output_limit,
            transport=transport,
            ready_timeout=ready_timeout,
            on_progress=on_progress,
        )

    @classmethod
    def _launch(
        cls, docker: Docker, *, tag: str, name: str | None, dependencies: Sequence[str],
        network: str, limits: Limits, idle_timeout: float | None, runtime: str | None,
        read_only: bool, timeout: float | None = None, output_limit: int | None = None,
        transport: Transport = "auto", ready_timeout: float = READY_TIMEOUT,
        on_progress: Callable[[str], None] | None = None,
    ) -> ContainerSession:  # fmt: skip
        """Run one container from ``tag`` and wait for its handshake.

        ``name=None`` makes a warm-pool container: labelled ``codeexec.pool=1`` with no
        session label; ``pool.py`` claims it later by renaming it (see ``pool.py``).
        """
        token = secrets.token_urlsafe(32)
        register_secret(token)
        labels = {
            LABEL_MANAGED: "1",
            LABEL_DEPS: _json_list(dependencies),
            LABEL_NETWORK: network,
            LABEL_CREATED: datetime.now(timezone.utc).isoformat(timespec="seconds"),
            LABEL_IDLE: str(float(idle_timeout or 0)),
        }
        if name is None:
            labels[LABEL_POOL] = "1"
            container_name = f"{POOL_CONTAINER_PREFIX}{secrets.token_hex(6)}"
        else:
            labels[LABEL_SESSION] = name
            container_name = f"codeexec-{name.lower().strip('.-_')}-{secrets.token_hex(3)}"
        spec = RunSpec(
            image=tag,
            container_name=container_name,
            labels=labels,
            env={"CODEEXEC_IDLE_TIMEOUT": str(float(idle_timeout or 0))},
            secret_env=("CODEEXEC_TOKEN",),
            network=network,
            limits=limits,
            runtime=runtime,
            read_only=read_only,
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
                transport=transport,
            )
            session._wait_ready(ready_timeout)
        except BaseException:
            docker.rm(container_id)  # a failed start leaves no half-made session
            raise
        return session

    @classmethod
    def attach(
        cls,
        name: str = "default",
        *,
        timeout: float | None = None,
        output_limit: int | None = None,
        transport: Transport = "auto",
        docker: Docker | None = None,
    ) -> ContainerSession:
        """Connect to a running session by name (e.g. one another process started).

        Raises:
            NoSuchSession: no running session has that name.
        """
        validate_name(name)
        docker = docker or Docker()
        data = _find_running(docker, name)
        if data is None:
            raise NoSuchSession(
                f"no running session named {name!r}: start one with "
                f"`codeexec start {name}` or ContainerSession.start({name!r}); "
                "`codeexec ls` lists the running ones"
            )
        session = cls(
            name=name,
            container=data,
            docker=docker,
            default_timeout=timeout,
            output_limit=output_limit,
            transport=transport,
        )
        session._connect()
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
        self._close_client(interrupt=True)
        self._docker.rm(self.container_id)

    def close(self) -> None:
        """Drop the connection but leave the container running."""
        self._close_client(interrupt=False)

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
        try:
            data = self._docker.inspect(self.container_id)
        except NoSuchSession:
            return False
        return bool((data.get("State") or {}).get("Running"))

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

        Raises:
            SessionBusy: another execution runs in this session.
            NoSuchSession: the container is gone (stopped, removed or idle-timed out).
        """
        with self._exclusive():
            client = self._ensure_client()
            try:
                return client.execute(
                    code,
                    timeout=self._timeout(timeout),
                    on_output=on_output,
                    output_limit=output_limit or self.output_limit,
                )
            except ConnectionLost as exc:
                self._raise_if_gone(exc, settle=LOST_SETTLE)
                raise

    def execute_stream(
        self,
        code: str,
        *,
        timeout: float | None = None,
        output_limit: int | None = None,
    ) -> Iterator[StreamEvent | Display | ExecResult]:
        """Like :meth:`execute`, yielding output events as they come; the last is the result."""
        with self._exclusive():
            client = self._ensure_client()
            try:
                yield from client.stream(
                    code,
                    timeout=self._timeout(timeout),
                    output_limit=output_limit or self.output_limit,
                )
            except ConnectionLost as exc:
                self._raise_if_gone(exc, settle=LOST_SETTLE)
                raise

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in the running code (safe from another thread)."""
        client = self._client
        if client is not None and not client.closed:
            client.interrupt()

    def reset(self) -> None:
        """Start a fresh Python process in the container: every variable is dropped."""
        with self._exclusive():
            self._ensure_client().reset()

    def ping(self) -> dict[str, Any]:
        """Ask the executor for its state (``busy``) without running code."""
        return self._ensure_client().ping()

    # -- files and packages -------------------------------------------------------
    def write_file(self, remote_path: str, data: bytes, *, mode: int = 0o644) -> int:
        """Write ``data`` to ``remote_path`` in the container (relative to /workspace).

        Raises:
            FileTransferError: too large (over ``MAX_FILE_BYTES``) or not writable there.
        """
        if len(data) > MAX_FILE_BYTES:
            raise FileTransferError(
                f"{len(data)} bytes is over the {MAX_FILE_BYTES} byte "
                f"({MAX_FILE_BYTES // 2**20} MiB) limit for one file transfer; split it, "
                "or install it with the image",
                code="too_large",
            )
        with self._exclusive():
            return self._ensure_client().put_file(remote_path, data, mode)

    def read_file(self, remote_path: str, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        """The bytes of ``remote_path`` in the container (relative to /workspace).

        Raises:
            FileTransferError: missing, larger than ``max_bytes``, or unreadable.
        """
        with self._exclusive():
            return self._ensure_client().get_file(remote_path, min(max_bytes, MAX_FILE_BYTES))

    def upload(self, local_path: str | os.PathLike[str], remote_path: str) -> int:
        """Copy a host file into the container; returns the bytes written.

        A ``remote_path`` that is empty or ends with ``/`` names a directory: the file
        keeps its name there (like ``cp``). An existing directory without the slash is
        refused (``FileTransferError``), never replaced.
        """
        path = Path(local_path)
        if not remote_path or remote_path.endswith("/"):
            remote_path += path.name
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise FileTransferError(
                    f"{path} is {size} bytes, over the {MAX_FILE_BYTES} byte "
                    f"({MAX_FILE_BYTES // 2**20} MiB) limit for one file transfer",
                    code="too_large",
                )
            data = path.read_bytes()
        except OSError as exc:
            raise FileTransferError(f"cannot read {path}: {exc.strerror}") from None
        return self.write_file(remote_path, data, mode=path.stat().st_mode & 0o777)

    def download(
        self,
        remote_path: str,
        local_path: str | os.PathLike[str],
        *,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> Path:
        """Copy a file out of the container to ``local_path`` (a directory keeps the name)."""
        data = self.read_file(remote_path, max_bytes=max_bytes)
        target = Path(local_path)
        if target.is_dir():
            target = target / PurePosixPath(remote_path).name
        try:
            target.write_bytes(data)
        except OSError as exc:
            raise FileTransferError(f"cannot write {target}: {exc.strerror}") from None
        return target

    def install(
        self,
        packages: Sequence[str],
        *,
        timeout: float | None = 600.0,
        on_output: Callable[[str, str], None] | None = None,
        allow_urls: bool = False,
    ) -> ExecResult:
        """Install packages into the running session; they import without a restart.

        The requirement strings are validated like those given to :meth:`start`.
        pip runs inside the container with the host's index settings and CA bundle
        (baked into the image); packages land in ``/tmp/.codeexec-site``. Returns pip's
        run as an ``ExecResult`` (``status="error"``, ename ``InstallError`` if it failed).

        Raises:
            InvalidDependency: a string is not a plain requirement (nothing ran).
            CodeexecError: the session has no network (``network="none"``).
        """
        specs = images.normalize_dependencies(packages, allow_urls=allow_urls)
        if not specs:
            raise InvalidDependency("install() needs at least one package")
        if self.info.network == "none":
            raise CodeexecError(
                f"session {self.name!r} runs with network 'none', so it cannot download "
                "packages; start a session with them as dependencies instead"
            )
        code = _INSTALL_CODE.format(packages=list(specs), target=SITE_DIR)
        return self.execute(code, timeout=timeout, on_output=on_output)

    # -- internals ----------------------------------------------------------------
    def _timeout(self, timeout: float | None) -> float | None:
        return timeout if timeout is not None else self.default_timeout

    def _exclusive(self) -> _Exclusive:
        return _Exclusive(self)

    def _ensure_client(self) -> ExecutorClient:
        if self._stopped:
            raise NoSuchSession(f"session {self.name!r} was stopped; start it again")
        client = self._client
        if client is None or client.closed:
            client = self._connect()
        return client

    def _connect(self, deadline: float | None = None, *, check_gone: bool = True) -> ExecutorClient:
        with self._connect_lock:
            if self._client is not None and not self._client.closed:
                return self._client
            try:
                self._client = self._open(deadline or time.monotonic() + 10.0)
            except ConnectionLost as exc:
                if check_gone:
                    self._raise_if_gone(exc)
                raise
            return self._client

    def _open(self, deadline: float) -> ExecutorClient:
        if self.transport == "exec":
            relay = self._docker.open_relay(self.container_id, _RELAY)
            try:
                return ExecutorClient.over_pipes(
                    relay.stdout,
                    relay.stdin,
                    self._token,
                    on_close=relay.close,
                    session=self.name or None,
                )
            except BaseException:
                relay.close()
                raise
        address = published_port(self._inspect)
        if address is None:
            self._inspect = self._docker.inspect(self.container_id)
            address = published_port(self._inspect)
        if address is None:
            raise ContainerStartError(
                f"session {self.name!r} has no published executor port; it was started "
                "without one (use transport='exec')"
            )
        remaining = max(0.5, deadline - time.monotonic())
        return ExecutorClient.connect_tcp(
            address[0],
            address[1],
            self._token,
            connect_timeout=min(5.0, remaining),
            session=self.name or None,
        )

    def _wait_ready(self, timeout: float) -> None:
        # docker-proxy accepts connections before the executor listens, so readiness
        # is a completed handshake, retried until the deadline.
        deadline = time.monotonic() + timeout
        delay = 0.02
        next_check = time.monotonic() + 0.5
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self._connect(deadline, check_gone=False)
                return
            except HandshakeError:
                raise
            except (ConnectionLost, DockerError) as exc:
                last = exc
                # Asking docker whether the container died costs a CLI call: at most
                # twice a second, not after every refused handshake.
                if isinstance(exc, NoSuchSession):
                    break
                if time.monotonic() >= next_check:
                    if not self.is_running():
                        break
                    next_check = time.monotonic() + 0.5
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        log_text = ""
        try:
            log_text = self._docker.logs(self.container_id, tail=40)
        except DockerError:
            pass
        raise ContainerStartError(
            f"the executor in session {self.name!r} did not answer within {timeout:.0f} s "
            f"({last}); the container log follows. Check the base image has Python 3.9+ "
            "and that `codeexec doctor` passes",
            container_log=log_text,
        )

    def _raise_if_gone(self, exc: Exception, settle: float = 0.0) -> None:
        # A container whose executor just died (killed by the code it ran) still
        # shows as running for a moment: `settle` seconds to see it stop.
        deadline = time.monotonic() + settle
        while self.is_running():
            if time.monotonic() >= deadline:
                return
            time.sleep(0.1)
        self._close_client(interrupt=False)
        raise NoSuchSession(
            f"session {self.name!r} is gone: its container stopped or was removed "
            "(killed from outside, out of memory, or idle timeout). Start it again "
            f"with `codeexec start {self.name}`"
        ) from exc

    def _close_client(self, *, interrupt: bool) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                if interrupt:
                    client.interrupt()
            except CodeexecError:
                pass
            client.close()


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


def _in_background(fn: Callable[[], _T]) -> Future[_T]:
    future: Future[_T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="codeexec-lookup", daemon=True).start()
    return future


def _json_list(items: Sequence[str]) -> str:
    import json

    return json.dumps(list(items))
