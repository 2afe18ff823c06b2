"""How one session's executor is reached: the connection, readiness and liveness.

``ContainerSession`` decides *what* to do; a ``Channel`` knows *where* the executor
is (the container's bridge address when this host reaches it, else its published
TCP port, or a ``docker exec`` relay), keeps one persistent connection to it,
reconnects when that drops, and tells a dropped connection from a container that
is gone (jupyter_client keeps this apart from its client too).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from . import _addrcache, _locality
from ._dockerargs import executor_command
from .client import ExecutorClient
from .docker import Docker
from .errors import (
    CodeexecError,
    ConnectionLost,
    ContainerStartError,
    DockerError,
    HandshakeError,
    NoSuchSession,
    register_secret,
)
from .models import SessionRef, Transport

RELAY_COMMAND = executor_command("relay")
# A bridge address this host reaches accepts in well under a millisecond; one it
# does not (a remote engine's, a dead container's) must not hold up the published
# port for long: the TCP connect gets this long, the handshake the usual deadline.
BRIDGE_DIAL = 0.25
LOST_SETTLE = 3.0  # seconds for a container whose executor died to show as stopped
# How a connection to an executor is opened: the session's ref and a deadline in, an
# authenticated client out. The default picks TCP or the exec relay by ``transport``;
# tests inject one that reaches a local executor (like httpx's MockTransport).
Connect = Callable[[SessionRef, float], ExecutorClient]


class Channel:
    """One persistent connection to the executor of one container."""

    def __init__(
        self, *, name: str, ref: SessionRef, docker: Docker, transport: Transport,
        connect: Connect | None = None,
    ) -> None:  # fmt: skip
        self.name = name
        self.ref = ref
        self.container_id = ref.id
        self._docker = docker
        register_secret(ref.token)
        if connect is not None and transport == "auto":  # an injected connection: no probe
            transport = "exec" if ref.info.network == "none" else "tcp"
        # "auto" stays until the first connection proves where the engine is (_probe).
        self.transport: Transport = _resolve(transport, ref, docker)
        self._connect = connect
        self._client: ExecutorClient | None = None
        self._lock = threading.Lock()

    def renamed(self, name: str, ref: SessionRef, transport: Transport) -> Channel:
        """This channel for a claimed pool container: its connection kept if it fits.

        The old channel is left closed-over (it must no longer be used).
        """
        channel = Channel(
            name=name, ref=ref, docker=self._docker, transport=transport, connect=self._connect
        )
        if channel.transport == self.transport:
            channel._client, self._client = self._client, None
            channel.ref = replace(ref, route=self.ref.route)
        else:
            self.close()
        return channel

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
                self._client = self._open_branch(deadline or time.monotonic() + 10.0)
            except (ConnectionLost, HandshakeError) as exc:
                if check_gone:
                    self.raise_if_gone(exc)
                raise
            return self._client

    def probe(self) -> dict[str, Any]:
        """The executor's hello, from a separate short connection.

        A hello is not activity, so this does not reset the idle timer (``ping`` does).
        """
        client = self._open_branch(time.monotonic() + 10.0)
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
            return self._docker.inspect(self.container_id).running
        except NoSuchSession:
            return False

    @contextmanager
    def watching(self, settle: float = 0.0) -> Iterator[None]:
        """Where a failure to reach the executor asks docker, once, whether it is gone.

        Raises:
            NoSuchSession: the container no longer runs (instead of the failure).
        """
        try:
            yield
        except (ConnectionLost, HandshakeError) as exc:
            self.raise_if_gone(exc, settle)
            raise

    @contextmanager
    def using(self) -> Iterator[ExecutorClient]:
        """The connection for one request, opened when needed, failures watched
        (as ``watching`` does, written out: this is on every request's path)."""
        try:
            client = self.client(check_gone=False)
        except (ConnectionLost, HandshakeError) as exc:
            self.raise_if_gone(exc)
            raise
        try:
            yield client
        except (ConnectionLost, HandshakeError) as exc:
            # An executor killed by the code it ran takes a moment to show as stopped.
            self.raise_if_gone(exc, LOST_SETTLE)
            raise

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

    def _open_branch(self, deadline: float) -> ExecutorClient:
        """A connection, switched to the session's fork if it is one (docs/snapshots.md)."""
        client = self._open(deadline)
        if self.ref.branch:
            try:
                client.select_branch(self.ref.branch)
            except BaseException:
                client.close()
                raise
        return client

    def _open(self, deadline: float) -> ExecutorClient:
        if self._connect is not None:
            return self._connect(self.ref, deadline)
        if self.transport == "auto":
            return self._probe(deadline)
        if self.transport == "exec":
            return self._relay()
        return self._tcp(deadline)

    def _relay(self) -> ExecutorClient:
        relay = self._docker.open_relay(self.container_id, RELAY_COMMAND)
        try:
            client = ExecutorClient.over_pipes(
                relay.stdout, relay.stdin, self.ref.token, on_close=relay.close,
                session=self.name or None,
            )  # fmt: skip
        except BaseException:
            relay.close()
            raise
        if self.ref.route != "exec":
            self.ref = replace(self.ref, route="exec")
        return client

    def _probe(self, deadline: float) -> ExecutorClient:
        """An engine not known to be local: the relay first (it always reaches the
        executor), then the published address once. Only an executor proving the
        token there makes the engine local (and TCP the route); anything else keeps
        the relay, and this engine's published ports are never dialled again."""
        relay = self._relay()  # the executor listens once this handshake is done
        if self.ref.address is None:
            self.ref = self._docker.inspect(self.container_id)
        address = self.ref.address
        try:
            if address is None:
                raise ConnectionLost("no published executor port")
            tcp = self._dial(address, deadline, "published", dial=1.0)
        except (ConnectionLost, HandshakeError):
            _locality.settle(self._docker, "remote")
            self.transport, self.ref = "exec", replace(self.ref, route="exec")
            return relay
        _locality.settle(self._docker, "local")
        relay.close()
        self.transport = "tcp"
        return tcp

    def _tcp(self, deadline: float) -> ExecutorClient:
        if self.ref.address is None and self.ref.bridge is None:
            self.ref = self._docker.inspect(self.container_id)
        address, bridge = self.ref.address, self._bridge()
        if address is None and bridge is None:
            raise ContainerStartError(
                f"session {self.name!r} has no published executor port; it was started "
                "without one (use transport='exec')"
            )
        if bridge is not None:
            try:
                return self._dial(bridge, deadline, "bridge", dial=BRIDGE_DIAL)
            except (ConnectionLost, HandshakeError) as exc:
                # Refused: the container is there but its executor is not listening
                # yet (a start); try the bridge again next time. Anything else (no
                # route, a timeout, a peer that is not this session's executor: a
                # remote engine's address) means this host does not reach it: the
                # published port from now on.
                if not isinstance(exc.__cause__, ConnectionRefusedError):
                    self.ref = replace(self.ref, route="published")
                if address is None:
                    raise
        assert address is not None
        return self._dial(address, deadline, "published")

    def _bridge(self) -> tuple[str, int] | None:
        """The bridge address to try first, unless it failed or is turned off."""
        if self.ref.route == "published" or os.environ.get("CODEEXEC_BRIDGE", "1") in (
            "0", "false", "no",
        ):  # fmt: skip
            return None
        return self.ref.bridge

    def _dial(
        self, address: tuple[str, int], deadline: float, route: str, *, dial: float = 5.0
    ) -> ExecutorClient:
        remaining = max(0.5, deadline - time.monotonic())
        client = ExecutorClient.connect_tcp(
            address[0],
            address[1],
            self.ref.token,
            connect_timeout=min(5.0, remaining),
            dial_timeout=min(dial, remaining),
            session=self.name or None,
        )
        if self.ref.route != route:
            self.ref = replace(self.ref, route=route)
        return client


def _resolve(transport: Transport, ref: SessionRef, docker: Docker) -> Transport:
    """``tcp`` or ``exec`` for ``auto`` (or ``auto`` again: to be probed, ``_probe``)."""
    if transport != "auto":
        return transport
    if ref.info.network == "none" or ref.route == "exec":
        return "exec"
    if ref.route in ("bridge", "published"):  # remembered from a proven connection
        return "tcp"
    place = _locality.locality(docker)
    return "tcp" if place == "local" else "exec" if place == "remote" else "auto"
