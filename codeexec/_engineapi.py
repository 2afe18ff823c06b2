"""The Docker Engine API over the engine's unix socket, for the calls on hot paths.

Every docker CLI call costs the CLI's own start-up (~10-20 ms here) before the
engine sees the request; the same request spoken over the socket costs well under
a millisecond. ``docker.py`` (and its verb mixins) use it for a few quick calls (the
warm pool's claim, ``docker rename``; finding and listing sessions, ``docker ps`` and
``docker container inspect``; a start's ``docker image inspect``) and only where
the answer is certainly the one the CLI would give, because it *is* the engine the
CLI would talk to (``socket_path``):

- the CLI is docker's own (a native executable, not podman, not a wrapper script:
  ``Docker``'s ``_api_socket`` checks that);
- the engine is a unix socket: ``--host``/``DOCKER_HOST`` unset (the default
  ``/var/run/docker.sock``) or ``unix://…``; no docker context other than
  ``default`` is named (``--context``, ``DOCKER_CONTEXT``, ``currentContext`` in the
  CLI's config.json, re-read whenever that file changes);
- ``CODEEXEC_ENGINE_API`` is not ``0``.

Anything else, or any failure that is not the engine's own error reply (no socket,
no permission, a timeout, a reply that is not the engine's JSON), raises
``Unusable`` and the caller runs the CLI instead. The engine's own errors (a name
in use, no such container) come back as a ``Reply`` whose message the caller maps
exactly as it maps the CLI's ``Error response from daemon: …``. No TCP engine
is ever spoken to here: a remote engine's traffic stays the CLI's (TLS, ssh).
A call may take ``MAX_TIMEOUT`` seconds before the CLI is asked. If the engine
did rename a container but its reply was lost, the CLI's rename then fails (the
name is the container's already): the pool gives that container up and the start
launches a fresh one; slower, never a wrong session.

The API version is the engine's own (``/_ping``'s ``Api-Version`` header), asked
once per socket per process, as the CLI negotiates it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_SOCKET = "/var/run/docker.sock"
CONNECT_TIMEOUT = 2.0  # a local socket connects at once, or something is wrong
MAX_TIMEOUT = 10.0  # seconds an API call may take before the CLI is asked instead
MAX_REPLY = 64 * 2**20  # bytes; a bigger answer is left to the CLI
MIN_VERSION = (1, 24)  # the oldest engine API whose endpoints we use as they are
_OFF = ("0", "false", "no", "off")
NO_ANSWER: Any = object()  # what ``Docker._api`` returns when the CLI must answer

_versions: dict[str, str | None] = {}  # socket path -> "/v1.41", or None: never use it
_contexts: dict[str, tuple[tuple[int, int], str]] = {}  # config.json -> (stat, current)
_lock = threading.Lock()


class Unusable(Exception):
    """The API gave no answer the CLI would give: run the CLI instead."""


@dataclass(frozen=True)
class Reply:
    """The engine's answer: its HTTP status and body."""

    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON (``Unusable`` when it is not)."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise Unusable(f"the engine's reply is not JSON: {self.body[:80]!r}") from exc

    def error(self) -> str:
        """The CLI's stderr for this error reply (``Unusable`` when it has no message)."""
        data = self.json()
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, str) or self.ok:
            raise Unusable(f"unexpected reply {self.status}: {self.body[:80]!r}")
        return f"Error response from daemon: {message}\n"


def enabled(environ: Mapping[str, str]) -> bool:
    """False when ``CODEEXEC_ENGINE_API`` turns the API off (the CLI for everything)."""
    return environ.get("CODEEXEC_ENGINE_API", "").strip().lower() not in _OFF


def socket_path(host: str, context: str, environ: Mapping[str, str]) -> str | None:
    """The unix socket the docker CLI talks to with ``--host host``/``--context
    context`` in ``environ``, or None when that is not certainly one socket."""
    if not hasattr(socket, "AF_UNIX") or sys.platform == "win32":
        return None
    if context:  # `--context`: the CLI gets no `--host` (engine_args)
        if context != "default":
            return None
        host = environ.get("DOCKER_HOST", "")  # the default context's endpoint
    elif not host:  # the environment decides, as for the CLI
        if (environ.get("DOCKER_CONTEXT") or "default") != "default":
            return None
        if current_context(environ) not in ("", "default"):
            return None
        host = environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://") and len(host) > len("unix://"):
        return host[len("unix://") :]
    return None  # tcp://, ssh://, fd://, npipe://: the CLI's


def current_context(environ: Mapping[str, str]) -> str:
    """``currentContext`` of the CLI's config.json ("" when none); "?" when unreadable.

    Read again only when the file changed, so ``docker context use`` counts at once.
    """
    folder = environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    path = os.path.join(folder, "config.json")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ""
    except OSError:
        return "?"
    stamp = (st.st_mtime_ns, st.st_size)
    with _lock:
        known = _contexts.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    try:
        with open(path, encoding="utf-8") as f:
            current = json.load(f).get("currentContext") or ""
    except (OSError, ValueError, AttributeError):
        return "?"
    current = current if isinstance(current, str) else "?"
    with _lock:
        _contexts[path] = (stamp, current)
    return current


def _exchange(
    path: str, method: str, url: str, timeout: float
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.0 request on a new connection: the engine answers without chunking
    and closes the connection after its reply (no ``http.client``: importing it costs
    a CLI process ~20 ms, more than the calls it would make)."""
    deadline = time.monotonic() + min(timeout, MAX_TIMEOUT)
    request = f"{method} {url} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n"
    chunks: list[bytes] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(path)
            sock.sendall(request.encode("ascii"))
            size = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no full reply in time")
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_REPLY:
                    raise OSError(f"a reply over {MAX_REPLY} bytes")
    except (OSError, UnicodeError) as exc:  # timeouts are OSErrors
        raise Unusable(f"{method} {url} on {path}: {exc}") from exc
    return _parse(b"".join(chunks))


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of an HTTP/1.x reply read to its end."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise Unusable(f"not an HTTP reply: {raw[:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise Unusable("a chunked reply to an HTTP/1.0 request")
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) != len(body)):
        raise Unusable(f"a reply of {len(body)} bytes says Content-Length {length}")
    return int(parts[1]), headers, body


def version_prefix(path: str) -> str:
    """``/v<the engine's API version>``, asked once (``Unusable`` if not a docker engine)."""
    with _lock:
        known = _versions.get(path, "")
    if known is None:
        raise Unusable(f"{path} is not an engine the API is used with")
    if known:
        return known
    status, headers, _ = _exchange(path, "GET", "/_ping", CONNECT_TIMEOUT)
    version = headers.get("api-version") or ""
    try:
        number = tuple(int(p) for p in version.split("."))
    except ValueError:
        number = ()
    if status != 200 or headers.get("libpod-api-version") or number < MIN_VERSION:
        prefix: str | None = None  # podman's socket, an old or odd engine: the CLI's
    else:
        prefix = f"/v{version}"
    with _lock:
        _versions[path] = prefix
    if prefix is None:
        raise Unusable(f"{path} answers /_ping {status} with API version {version!r}")
    return prefix


def call(path: str, method: str, url: str, timeout: float) -> Reply:
    """``method url`` (without the version) on the engine at ``path``.

    Raises:
        Unusable: no answer, or not the engine's (run the CLI instead).
    """
    status, _, body = _exchange(path, method, version_prefix(path) + url, timeout)
    return Reply(status, body)


def forget() -> None:
    """Drop what this process learnt of sockets and config files (tests)."""
    with _lock:
        _versions.clear()
        _contexts.clear()


# -- requests and answers ---------------------------------------------------------------


def rename_url(container: str, new_name: str) -> str:
    """``docker rename container new_name`` (POST)."""
    return f"/containers/{quote(container, safe='')}/rename?{urlencode({'name': new_name})}"


def ps_url(labels: Mapping[str, str], *, all: bool) -> str:
    """``docker ps [--all] --filter label=k=v…`` (GET); an empty value matches any."""
    filters = {"label": [f"{k}={v}" if v else k for k, v in labels.items()]}
    query = {"filters": json.dumps(filters, separators=(",", ":"))}
    if all:
        query["all"] = "1"
    return f"/containers/json?{urlencode(query)}"


def list_containers(
    path: str, labels: Mapping[str, str], all: bool, columns: Sequence[str], timeout: float
) -> list[list[str]]:
    """``docker ps``'s rows (``ps_rows``) of the containers carrying ``labels``.

    Raises:
        Unusable: any answer but the list (ask the CLI).
    """
    reply = call(path, "GET", ps_url(labels, all=all), timeout)
    if not reply.ok:
        raise Unusable(f"listing containers: {reply.status} {reply.body[:80]!r}")
    return ps_rows(reply.json(), columns)


def image_id(path: str, ref: str, timeout: float) -> str | None:
    """``docker image inspect --format {{.Id}} ref``: None when there is no such image.

    Raises:
        Unusable: any other answer (ask the CLI).
    """
    reply = call(path, "GET", f"/images/{quote(ref, safe='/:@')}/json", timeout)
    if _missing(reply, "no such image"):
        return None
    data = reply.json()
    if not reply.ok or not isinstance(data, dict) or not isinstance(data.get("Id"), str):
        raise Unusable(f"inspecting image {ref}: {reply.status} {reply.body[:80]!r}")
    return str(data["Id"])


def inspect_all(path: str, ids: Sequence[str], timeout: float) -> list[dict[str, Any]]:
    """``docker container inspect ids…``: each container's JSON, those gone left out.

    Raises:
        Unusable: any answer but the container or "no such container" (ask the CLI).
    """
    found = []
    for cid in ids:
        reply = call(path, "GET", f"/containers/{quote(cid, safe='')}/json", timeout)
        if _missing(reply, "no such container"):
            continue  # gone since it was listed, as the CLI leaves it out
        data = reply.json()
        if not reply.ok or not isinstance(data, dict):
            raise Unusable(f"inspecting {cid}: {reply.status} {reply.body[:80]!r}")
        found.append(data)
    return found


def _missing(reply: Reply, said: str) -> bool:
    """Whether ``reply`` is the engine's 404 saying ``said`` (not any other 404)."""
    return reply.status == 404 and said in reply.error().lower()


def ps_rows(data: Any, labels: Sequence[str]) -> list[list[str]]:
    """Each container of a ``ps_url`` answer as ``[id, names, label values…]``, as
    ``docker ps --no-trunc --format '{{.ID}}\\t{{.Names}}\\t{{.Label "k"}}…'`` prints it."""
    if not isinstance(data, list):
        raise Unusable(f"the container list is not a list: {str(data)[:80]}")
    rows = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("Id"), str):
            raise Unusable(f"a listed container has no id: {str(item)[:80]}")
        names = ",".join(str(n).removeprefix("/") for n in item.get("Names") or [])
        found = item.get("Labels") or {}
        rows.append([item["Id"], names, *(str(found.get(k, "")) for k in labels)])
    return rows
