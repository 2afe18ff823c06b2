"""The docker verbs about the engine itself, a mixin of ``Docker``: which engine and
where (``engine``, ``argv``, ``endpoint``, ``mem_total``), which CLI (``flavour``:
docker or podman), its runtimes, and reaping what failed gVisor starts leave behind.
``_api`` asks the engine's API directly (``_engineapi.py``) where that is certainly
the CLI's engine, for the verbs on hot paths.

They run nothing themselves: every call goes through ``Docker._run`` in ``docker.py``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

from . import _engineapi
from ._addrcache import cache_root
from ._dockererrors import classify
from ._dockerverbs import _Seam
from ._engineargs import RUNTIMES_ARGV, Flavour, is_gvisor, reaper_argv, runtime_names


@functools.lru_cache(maxsize=1)
def _podman_cwd() -> str | None:
    path = str(cache_root() / "podman")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None  # the caller's directory, as before
    return path


class EngineVerbs(_Seam):
    """Which engine and where; ``flavour``, ``runtimes`` and ``reap`` (gVisor's leftovers)."""

    _binary_name: str
    _global: list[str]

    @property
    def engine(self) -> str:
        """Which engine this CLI talks to: the same session name on two is two sessions."""
        if self.host or self.context:
            return "\0".join([self._binary_name, self.host, self.context])
        return "\0".join(
            [self._binary_name, *(os.environ.get(k, "") for k in ("DOCKER_HOST", "DOCKER_CONTEXT"))]
        )

    def argv(self, args: Sequence[str]) -> list[str]:
        """The full command line of one docker call on this engine."""
        return [self.binary, *self._global, *args]

    def endpoint(self) -> str:
        """The engine's address (``unix://…``, ``tcp://…``, ``ssh://…``); "" if unknown."""
        host = self.host or ("" if self.context else os.environ.get("DOCKER_HOST", ""))
        if host:
            return host
        args = ["context", "inspect", "--format", "{{.Endpoints.docker.Host}}"]
        proc = self._run([*args, *([self.context] if self.context else [])], check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def mem_total(self, timeout: float = 10.0) -> int:
        """The engine's memory in bytes (``docker info``); raises when it does not answer."""
        out = self._run(["info", "--format", "{{.MemTotal}}"], timeout=timeout).stdout
        return int(out.strip() or 0)

    @property
    def flavour(self) -> Flavour:
        """``podman`` when the CLI is podman (or docker's podman wrapper), else ``docker``."""
        return _flavour_of_binary(self.binary)

    @property
    def spawn_cwd(self) -> str | None:
        """The directory the CLI runs in; None: the caller's. podman's conmon, which
        outlives ``podman run``, writes an empty ``oom`` file into its working
        directory when the container's memory limit kills a process, so podman runs
        in a directory of codeexec's (every path codeexec passes a CLI is absolute)."""
        if self.flavour != "podman":
            return None
        return _podman_cwd()

    def _api(
        self, method: str, url: str, args: Sequence[str], *, what: str, timeout: float = 30.0
    ) -> Any:
        """The body of the engine API's success reply to ``method url``, the request the
        CLI makes for ``docker args``; ``NO_ANSWER`` when the API is not this CLI's
        engine or gives no answer the CLI would give: then run the CLI. The engine's
        own error raises what the CLI's ``Error response from daemon`` would."""
        path = self._api_socket()
        if path is None:
            return _engineapi.NO_ANSWER
        try:
            reply = _engineapi.call(path, method, url, timeout)
            if reply.ok:
                return reply.body
            stderr = reply.error()
        except _engineapi.Unusable:
            return _engineapi.NO_ANSWER
        raise classify(self.argv(args), 1, "", stderr, what or f"`docker {args[0]}`")

    def _api_ask(self, question: Callable[..., Any], *args: Any) -> Any:
        """``question(socket, *args)`` of ``_engineapi``; ``NO_ANSWER``: run the CLI."""
        path = self._api_socket()
        try:
            return _engineapi.NO_ANSWER if path is None else question(path, *args)
        except _engineapi.Unusable:
            return _engineapi.NO_ANSWER

    def _api_socket(self) -> str | None:
        """The engine's unix socket when the API is certainly the CLI's engine, else None."""
        if not _engineapi.enabled(os.environ) or self.flavour != "docker":
            return None
        if not _native(self.binary):  # a wrapper script may do anything: ask it
            return None
        return _engineapi.socket_path(self.host, self.context, os.environ)

    def runtimes(self) -> dict[str, str]:
        """The engine's runtimes (name -> path), ``{}`` when it does not say (podman)."""
        proc = self._run(RUNTIMES_ARGV, what="asking the engine for its runtimes", check=False)
        return runtime_names(proc.stdout) if proc.returncode == 0 else {}

    def reap(self, image: str, ids: Sequence[str] = (), *, runtime: str | None = None) -> list[str]:
        """Remove what failed gVisor starts left on the engine's host; the ids reaped.

        ``ids``: the containers whose start just failed. Without ids, every leftover
        of a container the engine no longer lists (``codeexec gc``). A no-op unless
        ``runtime`` (when given) is gVisor or, without ids, the engine has gVisor.
        """
        import secrets

        if self.flavour == "podman" or (ids and not is_gvisor(runtime)):
            return []  # podman runs no containerd shims
        runtimes = {} if ids else self.runtimes()
        if not ids and not any(is_gvisor(n, runtimes) for n in runtimes):
            return []
        known = "" if ids else self._run(["ps", "--all", "--quiet", "--no-trunc"]).stdout
        name = f"codeexec-reaper-{secrets.token_hex(4)}"
        argv = reaper_argv(image, name, ids)
        proc = self._run(argv, input=known, timeout=60, what="reaping gVisor leftovers")
        return proc.stdout.split()


@functools.lru_cache(maxsize=8)
def _flavour_of_binary(path: str) -> Flavour:
    """podman by the CLI's real name, or a script that runs podman (podman-docker)."""
    real = os.path.realpath(path)
    if "podman" in os.path.basename(real):
        return "podman"
    try:
        with open(real, "rb") as f:
            head = f.read(4096)
    except OSError:
        return "docker"
    return "podman" if head.startswith(b"#!") and b"podman" in head else "docker"


@functools.lru_cache(maxsize=8)
def _native(path: str) -> bool:
    """Whether the CLI at ``path`` is an executable (ELF, Mach-O), not a script."""
    try:
        with open(os.path.realpath(path), "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"\x7fELF" or head in (b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
