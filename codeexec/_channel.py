"""How one session's executor is reached: the connection, readiness and liveness.

``ContainerSession`` decides *what* to do; a ``Channel`` knows *where* the executor
is (a published TCP port or a ``docker exec`` relay), keeps one persistent
connection to it, reconnects when that drops, and tells a dropped connection from
a container that is gone (jupyter_client keeps this apart from its client too).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

from . import _addrcache
from ._dockerargs import executor_command
from .client import ExecutorClient
from .docker import Docker, container_env, published_port
from .errors import (
    CodeexecError,
    ConnectionLost,
    ContainerStartError,
    DockerError,
    HandshakeError,
    NoSuchSession,
    register_secret,
)

Transport = Literal["auto", "tcp", "exec"]
RELAY_COMMAND = executor_command("relay")


class Channel:
    """One persistent connection to the executor of one container."""

    def __init__(
        self, *, name: str, container: dict[str, Any], docker: Docker, transport: Transport
    ) -> None:
        self.name = name
        self.container_id = str(container.get("Id", ""))
        self._docker = docker
        self._inspect = container
        self._token = container_env(container).get("CODEEXEC_TOKEN", "")
        register_secret(self._token)
        self.transport = transport
        self._client: ExecutorClient | None = None
        self._lock = threading.Lock()

    @property
    def container(self) -> dict[str, Any]:
        """The ``docker inspect`` data this channel was made from."""
        return self._inspect

    @property
    def connected(self) -> ExecutorClient | None:
        """The open connection, if any (never connects)."""
        client = self._client
        return client if client is not None and not client.closed else None

    def client(self, deadline: float | None = None, *, check_gone: bool = True) -> ExecutorClient:
        """The connection, opened (or reopened) when needed.

        Raises:
            NoSuchSession: the container is gone (when ``check_gone``).
            ConnectionLost: the executor did not answer.
            HandshakeError: the peer did not prove it is this session's executor.
        """
        with self._lock:
            if self._client is not None and not self._client.closed:
                return self._client
            try:
                self._client = self._open(deadline or time.monotonic() + 10.0)
            except (ConnectionLost, HandshakeError) as exc:
                if check_gone:
                    self.raise_if_gone(exc)
                raise
            return self._client

    def probe(self) -> dict[str, Any]:
        """The executor's hello, from a separate short connection.

        A hello is not activity, so this does not reset the idle timer (``ping`` does).
        """
        client = self._open(time.monotonic() + 10.0)
        try:
            return dict(client.hello)
        finally:
            client.close()

    def close(self, *, interrupt: bool = False) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                if interrupt:
                    client.interrupt()
            except CodeexecError:
                pass
            client.close()

    def is_running(self) -> bool:
        """Whether the container still runs (one docker call)."""
        try:
            data = self._docker.inspect(self.container_id)
        except NoSuchSession:
            return False
        return bool((data.get("State") or {}).get("Running"))

    def wait_ready(self, timeout: float) -> None:
        """Connect, retrying until ``timeout``; a completed handshake means ready.

        Raises:
            ContainerStartError: no handshake in time (the container log is attached).
        """
        # docker-proxy accepts connections before the executor listens, so readiness
        # is a completed handshake, retried until the deadline, never a sleep.
        deadline = time.monotonic() + timeout
        delay = 0.02
        next_check = time.monotonic() + 0.5
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.client(deadline, check_gone=False)
                return
            except HandshakeError:
                raise
            except (ConnectionLost, DockerError) as exc:
                last = exc
                if isinstance(exc, NoSuchSession):
                    break
                # Asking docker whether the container died costs a CLI call: at most
                # twice a second, not after every refused handshake.
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

    def raise_if_gone(self, exc: Exception, settle: float = 0.0) -> None:
        """Raise ``NoSuchSession`` if the container stopped; return if it still runs.

        A container whose executor just died (killed by the code it ran) still shows
        as running for a moment: ``settle`` seconds to see it stop.
        """
        deadline = time.monotonic() + settle
        while self.is_running():
            if time.monotonic() >= deadline:
                return
            time.sleep(0.1)
        self.close()
        _addrcache.forget(self.name, self.container_id)
        impostor = (
            " Another program now answers on its old address; it did not prove it is the "
            "session's executor and was sent nothing but a random nonce."
            if isinstance(exc, HandshakeError)
            else ""
        )
        raise NoSuchSession(
            f"session {self.name!r} is gone: its container stopped or was removed "
            "(killed from outside, out of memory, or idle timeout). Start it again "
            f"with `codeexec start {self.name}`.{impostor}"
        ) from exc

    def _open(self, deadline: float) -> ExecutorClient:
        if self.transport == "exec":
            relay = self._docker.open_relay(self.container_id, RELAY_COMMAND)
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
