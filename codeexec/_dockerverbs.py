"""The docker verbs that read images and find sessions, as mixins of ``Docker``.

They run nothing themselves: every call goes through ``Docker._run`` in
``docker.py``, the one place that starts processes; here the arguments are put
together and the answers parsed (into ``SessionRef`` and ``ImageInfo``).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ._buildargs import build_argv, commit_argv
from ._dockerargs import (
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_SESSION,
    Command,
    classify,
    image_info,
    parse_ref,
    pool_session_name,
)
from ._engineargs import (
    IMAGES_FORMAT,
    RUNTIMES_ARGV,
    Flavour,
    images_rows,
    is_gvisor,
    ps_label,
    reaper_argv,
    runtime_names,
)
from .models import ImageInfo, Limits, SessionInfo, SessionRef


class Completed(Protocol):
    """What ``Docker._run`` returns (a ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


class _Seam:
    """What the verbs need of ``Docker`` (defined there)."""

    @property
    def binary(self) -> str:
        raise NotImplementedError

    @property
    def engine(self) -> str:
        raise NotImplementedError

    @property
    def flavour(self) -> Flavour:
        raise NotImplementedError

    def _run(
        self, args: Sequence[str], *, timeout: float = 30.0, what: str = "",
        input: str | None = None, env: Mapping[str, str] | None = None, check: bool = True,
    ) -> Completed:  # fmt: skip
        raise NotImplementedError

    def stream(
        self, args: Sequence[str], *, timeout: float, on_line: Callable[[str], None] | None,
        env: Mapping[str, str] | None = None, input: str = "", limits: Limits | None = None,
    ) -> None:  # fmt: skip
        raise NotImplementedError


class ImageVerbs(_Seam):
    """``image_exists``, ``image_id``, ``build``, ``commit``, ``images``, ``rmi`` …"""

    def image_exists(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def image_id(self, ref: str) -> str | None:
        """The image's id, or None when no such image exists locally (one call)."""
        proc = self._run(["image", "inspect", "--format", "{{.Id}}", ref], check=False)
        if proc.returncode == 0:
            return proc.stdout.strip()
        low = proc.stderr.lower()
        if "no such image" in low or "no such object" in low or "image not known" in low:
            return None
        raise classify(
            [self.binary, "image", "inspect", ref],
            proc.returncode,
            proc.stdout,
            proc.stderr,
            f"inspecting image {ref}",
        )

    def build(
        self,
        context_dir: str,
        tag: str | None,
        *,
        labels: Mapping[str, str],
        timeout: float,
        on_line: Callable[[str], None] | None = None,
    ) -> str:
        """Build an image, passing each log line to ``on_line``; returns its id."""
        import tempfile

        fd, iidfile = tempfile.mkstemp(prefix="codeexec-iid-")
        os.close(fd)
        try:
            # DOCKER_BUILDKIT=0: plain Step lines; no buildx needed.
            args = build_argv(context_dir, tag, labels, iidfile)
            self.stream(args, timeout=timeout, on_line=on_line, env={"DOCKER_BUILDKIT": "0"})
            with open(iidfile, encoding="utf-8") as f:
                return f.read().strip()
        finally:
            if os.path.exists(iidfile):  # docker removes it first, writes it on success
                os.unlink(iidfile)

    def commit(self, container: str, tag: str, changes: Sequence[str]) -> None:
        """Make the image ``tag`` from a stopped container."""
        self._run(commit_argv(container, tag, changes), timeout=600, what="committing the image")

    def images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        fmt = IMAGES_FORMAT if self.flavour == "podman" else "{{json .}}"
        args = Command(["images", "--no-trunc", "--format", fmt])
        args.repeat(
            "--filter", [f"label={k}={v}" if v else f"label={k}" for k, v in labels.items()]
        )
        refs = images_rows(self._run(args).stdout, self.flavour)
        if not refs:
            return []
        by_id = {i["Id"]: i for i in self.inspect_images([r["ID"] for r in refs])}
        return [image_info(ref, by_id.get(ref["ID"], {})) for ref in refs]

    def inspect_images(self, refs: Sequence[str]) -> list[dict[str, Any]]:
        out = self._run(["image", "inspect", *refs], what="inspecting images").stdout
        result: list[dict[str, Any]] = json.loads(out or "[]")
        return result

    def image_config(self, ref: str) -> dict[str, Any]:
        """The ``Config`` of an image: user, working directory, command, labels."""
        config: dict[str, Any] = self.inspect_images([ref])[0].get("Config") or {}
        return config

    def rmi(self, *refs: str, check: bool = True) -> None:
        if refs:
            self._run(["rmi", *refs], what="removing images", check=check)

    def volume_create(self, name: str, labels: Mapping[str, str]) -> None:
        """Create the named volume, or keep the one of that name (idempotent)."""
        args = Command(["volume", "create"])
        args.repeat("--label", [f"{k}={v}" for k, v in sorted(labels.items())])
        args.append(name)
        self._run(args, what="creating the build cache volume")

    def volumes(self, label: str) -> list[str]:
        """The names of the volumes carrying ``label``."""
        out = self._run(
            ["volume", "ls", "--quiet", "--filter", f"label={label}"], what="listing volumes"
        ).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def volume_rm(self, name: str) -> None:
        self._run(["volume", "rm", name], what="removing a volume")


class SessionLookup(_Seam):
    """``inspect``, ``ps``, ``ps_inspect`` and ``find_session``: containers as refs."""

    def inspect(self, container: str) -> SessionRef:
        """The container as a ``SessionRef`` (``NoSuchSession`` when it does not exist)."""
        out = self._run(
            ["container", "inspect", container], what=f"inspecting container {container}"
        ).stdout
        data: list[dict[str, Any]] = json.loads(out)
        return parse_ref(data[0], self.engine)

    def ps(self, labels: Mapping[str, str], *, all: bool = True) -> list[SessionInfo]:
        """Containers carrying ``labels`` (an empty value matches any value)."""
        return [ref.info for ref in self.ps_inspect(labels, all=all)]

    def ps_inspect(self, labels: Mapping[str, str], *, all: bool = True) -> list[SessionRef]:
        """Every container carrying ``labels``, inspected."""
        # Labels are read from `inspect`, not from `ps`, whose comma-joined label
        # column cannot be split reliably (requirement strings contain commas).
        args = Command(["ps", "--quiet", "--no-trunc"]).flag("--all", all)
        args.repeat(
            "--filter", [f"label={k}={v}" if v else f"label={k}" for k, v in labels.items()]
        )
        return self._inspect_many(self._run(args, what="listing containers").stdout.split())

    def find_session(self, name: str, *, all: bool = False) -> list[SessionRef]:
        """The containers of session ``name``, running ones first (``all``: stopped too).

        The one lookup of a session by name. One ``docker ps`` call when nothing
        matches (the common case on ``start``): the session label, or the name of a
        claimed pool container, is read from it; unclaimed pool containers never match.
        """
        return self.inspect_session(name, self.session_candidates(name, all=all))

    def session_candidates(self, name: str, *, all: bool = False) -> list[str]:
        """The ids that ``find_session`` inspects (its ``docker ps`` half)."""
        fmt = "\t".join(
            [
                "{{.ID}}",
                "{{.Names}}",
                ps_label(LABEL_SESSION, self.flavour),
                ps_label(LABEL_POOL, self.flavour),
            ]
        )
        args = Command(["ps", "--no-trunc"]).flag("--all", all)
        args.extend(["--filter", f"label={LABEL_MANAGED}=1", "--format", fmt])
        ids = []
        for line in self._run(args, what="listing containers").stdout.splitlines():
            cid, cname, session, pool = (line.split("\t") + ["", "", "", ""])[:4]
            if session == name or (pool and not session and pool_session_name(cname) == name):
                ids.append(cid)
        return ids

    def inspect_session(self, name: str, ids: Sequence[str]) -> list[SessionRef]:
        """``find_session``'s second half: the candidates ``ids``, inspected, running first."""
        found = [ref for ref in self._inspect_many(ids) if ref.name == name]
        return sorted(found, key=lambda ref: not ref.running)

    def _inspect_many(self, ids: Sequence[str]) -> list[SessionRef]:
        if not ids:
            return []
        proc = self._run(["container", "inspect", *ids], check=False)
        # A container may vanish between ps and inspect; inspect still prints the rest.
        data: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
        return [parse_ref(d, self.engine) for d in data]


class EngineVerbs(_Seam):
    """``flavour``, ``runtimes`` and ``reap``: which engine, its runtimes, gVisor's leftovers."""

    @property
    def flavour(self) -> Flavour:
        """``podman`` when the CLI is podman (or docker's podman wrapper), else ``docker``."""
        return _flavour_of_binary(self.binary)

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
