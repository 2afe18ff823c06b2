"""The docker verbs that read images and find sessions, as mixins of ``Docker``.

They run nothing themselves: every call goes through ``Docker._run`` in
``docker.py``, the one place that starts processes; here the arguments are put
together and the answers parsed (into ``SessionRef`` and ``ImageInfo``).
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ._buildargs import build_argv, commit_argv
from ._dockerargs import (
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_SCOPE,
    LABEL_SESSION,
    Command,
    classify,
    image_info,
    parse_ref,
    pool_session_name,
)
from ._engineapi import NO_ANSWER, image_id, inspect_all, list_containers
from ._engineargs import (
    IMAGES_FORMAT,
    Flavour,
    images_rows,
    ps_label,
)
from .models import ImageInfo, Limits, SessionInfo, SessionRef


class Completed(Protocol):
    """What ``Docker._run`` returns (a ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


LOGS_MAX_BYTES = 4 * 2**20  # of a container log read into memory (codeexec logs)
FOLLOW_TIMEOUT = 7 * 86400.0  # `codeexec logs -f`: a bound, as every call has one


class _Seam:
    """What the verbs need of ``Docker`` (defined there)."""

    @property
    def binary(self) -> str:
        raise NotImplementedError

    @property
    def engine(self) -> str:
        raise NotImplementedError

    host: str
    context: str

    def argv(self, args: Sequence[str]) -> list[str]:
        raise NotImplementedError

    @property
    def flavour(self) -> Flavour:
        raise NotImplementedError

    def _run(
        self, args: Sequence[str], *, timeout: float = 30.0, what: str = "",
        input: str | None = None, env: Mapping[str, str] | None = None, check: bool = True,
    ) -> Completed:  # fmt: skip
        raise NotImplementedError

    def _api_ask(self, question: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def stream(
        self, args: Sequence[str], *, timeout: float, on_line: Callable[[str], None] | None,
        env: Mapping[str, str] | None = None, input: str = "", limits: Limits | None = None,
    ) -> None:  # fmt: skip
        raise NotImplementedError

    def _lines(
        self, argv: list[str], each: Callable[[str], None], *, timeout: float,
        env: Mapping[str, str] | None = None, input: str = "", max_line: int = -1,
    ) -> tuple[int, bool]:  # fmt: skip
        raise NotImplementedError


class ImageVerbs(_Seam):
    """``image_exists``, ``image_id``, ``build``, ``commit``, ``images``, ``rmi`` …"""

    def image_exists(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def image_id(self, ref: str) -> str | None:
        """The image's id, or None when no such image exists locally (one call)."""
        found = self._api_ask(image_id, ref, 30.0)
        if found is not NO_ANSWER:
            return found  # type: ignore[no-any-return]
        proc = self._run(["image", "inspect", "--format", "{{.Id}}", ref], check=False)
        if proc.returncode == 0:
            return proc.stdout.strip()
        low = proc.stderr.lower()
        if "no such image" in low or "no such object" in low or "image not known" in low:
            return None
        raise classify(
            self.argv(["image", "inspect", ref]),
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

    def run_base_image_script(
        self, script: str, tag: str, *, suite: str, timeout: float, on_line: Callable[[str], None]
    ) -> tuple[int, bool]:
        """Run ``make_base_image.sh TAG`` (debootstrap, then ``docker import``) with this
        engine's binary; returns its exit code and whether ``timeout`` ran out."""
        env = {"CODEEXEC_DOCKER": self.binary, "DEBIAN_SUITE": suite}
        return self._lines(["bash", script, tag], on_line, timeout=timeout, env=env)

    def commit(
        self, container: str, tag: str, changes: Sequence[str], message: str | None = None
    ) -> None:
        """Make the image ``tag`` from a stopped container."""
        argv = commit_argv(container, tag, changes, message)
        self._run(argv, timeout=600, what="committing the image")

    def image_history(self, ref: str) -> list[dict[str, Any]]:
        """``docker history`` of an image, newest layer first (``ID``, ``Comment`` …)."""
        args = ["history", "--no-trunc", "--format", "{{json .}}", ref]
        out = self._run(args, what="reading an image's history").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

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

    def image_ids(self, labels: Mapping[str, str]) -> list[str]:
        """The ids of the tagged and dangling images carrying ``labels`` (one call)."""
        args = Command(["images", "--quiet", "--no-trunc"])
        args.repeat("--filter", [f"label={k}={v}" for k, v in labels.items()])
        out = self._run(args, what="listing images").stdout
        return list(dict.fromkeys(line.strip() for line in out.splitlines() if line.strip()))

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


LABEL_FORK_OF = "codeexec.fork-of"  # a fork's marker: the container the fork runs in


def fork_marker_argv(name: str, source: SessionRef, suffix: str) -> list[str]:
    """``docker create`` of the never-started container that carries a fork's name
    (docs/snapshots.md): the fork itself runs inside ``source``'s container."""
    cmd = Command(["create", "--name", f"codeexec-fork-{name.lower().strip('.-_')}-{suffix}"])
    cmd.extend(["--label", f"{LABEL_MANAGED}=1", "--label", f"{LABEL_SESSION}={name}"])
    cmd.extend(["--label", f"{LABEL_FORK_OF}={source.id}"])
    for key in (LABEL_SCOPE,):
        if source.labels.get(key):
            cmd.extend(["--label", f"{key}={source.labels[key]}"])
    cmd.extend(["--network", "none", "--entrypoint", "true", source.image_id or source.info.image])
    return list(cmd)


class SessionLookup(_Seam):
    """``inspect``, ``ps``, ``ps_inspect`` and ``find_session``: containers as refs."""

    def create_fork_marker(self, name: str, source: SessionRef, suffix: str) -> str:
        """Create a fork's marker container; returns its id."""
        argv = fork_marker_argv(name, source, suffix)
        return self._run(argv, what=f"naming the fork {name!r}").stdout.strip()

    def fork_markers(self) -> dict[str, str]:
        """Every fork's marker container: its id -> the id of the container it runs in."""
        fmt = '{{.ID}}\t{{.Label "' + LABEL_FORK_OF + '"}}'
        args = ["ps", "--all", "--no-trunc", "--filter", f"label={LABEL_FORK_OF}", "--format", fmt]
        lines = self._run(args, what="listing forks").stdout.splitlines()
        return dict(line.split("\t", 1) for line in lines if "\t" in line)

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
        listed = self._api_ask(list_containers, labels, all, (), 30.0)
        if listed is NO_ANSWER:
            return self._inspect_many(self._run(args, what="listing containers").stdout.split())
        return self._inspect_many([row[0] for row in listed])

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
        columns = (LABEL_SESSION, LABEL_POOL)
        rows = self._api_ask(list_containers, {LABEL_MANAGED: "1"}, all, columns, 30.0)
        if rows is NO_ANSWER:  # the CLI's engine is not certainly the socket's: ask it
            lines = self._run(args, what="listing containers").stdout.splitlines()
            rows = [(line.split("\t") + ["", "", "", ""])[:4] for line in lines]
        ids = []
        for cid, cname, session, pool in rows:
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
        data = self._api_ask(inspect_all, ids, 30.0)
        if data is NO_ANSWER:
            proc = self._run(["container", "inspect", *ids], check=False)
            # A container may vanish between ps and inspect; inspect still prints the rest.
            data = json.loads(proc.stdout or "[]")
        return [parse_ref(d, self.engine) for d in data]

    def logs(
        self, container: str, tail: int | None = 200, max_bytes: int = LOGS_MAX_BYTES,
        follow: Callable[[str], None] | None = None,
    ) -> str:  # fmt: skip
        """The last ``tail`` lines (None: all) of a container's log, at most ``max_bytes``.

        Streamed, so a huge log never sits whole in memory; older lines beyond
        ``max_bytes`` are dropped and a marker says so. With ``follow``, each line
        goes there as it comes until the container ends (``docker logs --follow``).
        """
        args = Command(["logs"]).opt("--tail", tail).flag("--follow", follow is not None)
        argv = self.argv([*args, container])
        kept: deque[str] = deque()
        size = dropped = 0

        def keep(line: str) -> None:
            nonlocal size, dropped
            kept.append(line)
            size += len(line)
            while size > max_bytes:
                size -= len(kept.popleft())
                dropped += 1

        wait = 120.0 if follow is None else FOLLOW_TIMEOUT
        returncode, _ = self._lines(argv, follow or keep, timeout=wait, max_line=max_bytes)
        text = "".join(kept)
        if returncode != 0:
            raise classify(argv, returncode, "", text, f"reading the log of {container}")
        if dropped:
            text = f"[codeexec: {dropped} earlier lines dropped, over {max_bytes} bytes]\n{text}"
        return text
