"""Whether an engine's published ports are this host's: the TCP route, or the exec relay.

A container's port is published on the *engine's* 127.0.0.1. When the engine runs
on another host (``ssh://``, ``tcp://``, a context, or a unix socket forwarded from
elsewhere), that port on this host's loopback is someone else's, so ``transport=
"auto"`` must not dial it: the session is reached through the exec relay (the same
frames over ``docker exec -i``) instead. Which one an engine is, is decided once per
engine and remembered (in this process and in the address cache's folder):

1. a unix socket whose server process this host can see: the engine is local exactly
   when that process shares this process's network namespace (no dial at all);
2. otherwise ``unknown``: the first session's channel connects through the relay,
   then dials the published address once, and only an executor that proves the
   session token there (the handshake) makes the engine local. Anything else
   (refused, no answer, a stranger) makes it remote.

``CODEEXEC_ENGINE_LOCAL=1`` or ``0`` decides without asking (e.g. a rootless engine
whose ports a port driver forwards here).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from typing import Literal

from . import _addrcache
from .docker import Docker
from .errors import DockerError

Locality = Literal["local", "remote", "unknown"]

_known: dict[str, Locality] = {}
_lock = threading.Lock()


def locality(docker: Docker) -> Locality:
    """What is known of ``docker``'s engine (may run ``docker context inspect`` once)."""
    forced = os.environ.get("CODEEXEC_ENGINE_LOCAL", "").strip().lower()
    if forced in ("1", "true", "yes"):
        return "local"
    if forced in ("0", "false", "no"):
        return "remote"
    key = _key(docker)
    with _lock:
        if key in _known:
            return _known[key]
    found = _addrcache.recall_engine(key)
    if found not in ("local", "remote"):
        try:
            found = _peer_namespace(docker.endpoint())
        except DockerError:
            found = "unknown"
        if found != "unknown":
            _addrcache.remember_engine(key, found)
    with _lock:
        _known[key] = found  # type: ignore[assignment]
    return found  # type: ignore[return-value]


def settle(docker: Docker, found: Locality) -> None:
    """Record what a probe (``_channel.py``) proved of ``docker``'s engine."""
    key = _key(docker)
    with _lock:
        _known[key] = found
    _addrcache.remember_engine(key, found)


def forget() -> None:
    """Drop what this process knows (tests)."""
    with _lock:
        _known.clear()


def _key(docker: Docker) -> str:
    """``docker.engine``, plus the CLI's current context when nothing else names the
    engine: `docker context use other` must not inherit what was known of the last one."""
    if docker.host or docker.context or os.environ.get("DOCKER_HOST"):
        return docker.engine
    if os.environ.get("DOCKER_CONTEXT"):
        return docker.engine
    config = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    try:
        with open(os.path.join(config, "config.json"), encoding="utf-8") as f:
            current = json.load(f).get("currentContext") or ""
    except (OSError, ValueError, AttributeError):
        current = ""
    return f"{docker.engine}\0{current}"


def _peer_namespace(endpoint: str) -> Locality:
    """``local``/``remote`` from the network namespace of a unix socket's server."""
    if not endpoint.startswith("unix://") or not hasattr(socket, "SO_PEERCRED"):
        return "unknown"
    path = endpoint[len("unix://") :]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(path)
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", creds)[0]
        if pid <= 0:  # the server is in another pid namespace: cannot tell
            return "unknown"
        theirs = os.readlink(f"/proc/{pid}/ns/net")
        ours = os.readlink("/proc/self/ns/net")
    except OSError:
        return "unknown"  # not ours to read (another user's engine), or no /proc
    return "local" if theirs == ours else "remote"
