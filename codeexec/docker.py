"""The one place that runs the docker CLI.

Every call is an argument list (never a shell string) with a timeout; stdout and
stderr are always captured, because under ``codeexec mcp`` our stdout is the MCP
wire. The binary is ``$CODEEXEC_DOCKER`` (default ``docker``), so ``DOCKER_HOST``,
docker contexts and podman work unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from ._buildargs import (  # re-exported: callers import them from here
    BUILD_UID as BUILD_UID,
    build_argv as build_argv,
    build_error as build_error,
    commit_argv as commit_argv,
    commit_changes as commit_changes,
    install_argv as install_argv,
)
from ._dockerargs import (  # re-exported: callers import them from here
    EXECUTOR_PORT as EXECUTOR_PORT,
    EXECUTOR_UID as EXECUTOR_UID,
    LABEL_BASE as LABEL_BASE,
    LABEL_CREATED as LABEL_CREATED,
    LABEL_DEPS as LABEL_DEPS,
    LABEL_IDLE as LABEL_IDLE,
    LABEL_IMAGE as LABEL_IMAGE,
    LABEL_MANAGED as LABEL_MANAGED,
    LABEL_MAX_LIFETIME as LABEL_MAX_LIFETIME,
    LABEL_NETWORK as LABEL_NETWORK,
    LABEL_POOL as LABEL_POOL,
    LABEL_SCOPE as LABEL_SCOPE,
    LABEL_SESSION as LABEL_SESSION,
    LABEL_SETTINGS as LABEL_SETTINGS,
    LOG_MAX_FILES as LOG_MAX_FILES,
    LOG_MAX_SIZE as LOG_MAX_SIZE,
    POOL_CONTAINER_PREFIX as POOL_CONTAINER_PREFIX,
    Command as Command,
    RunSpec as RunSpec,
    classify as classify,
    confine as confine,
    container_env as container_env,
    image_info as image_info,
    parse_inspect as parse_inspect,
    parse_ref as parse_ref,
    pool_session_name as pool_session_name,
    published_port as published_port,
    relay_argv as relay_argv,
    run_argv as run_argv,
)
from .errors import (
    ContainerStartError,
    DockerError,
    DockerNotAvailable,
    NoSuchSession,
)
from .models import ImageInfo, Limits, SessionInfo, SessionRef

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_QUICK = 30.0  # seconds for calls that answer at once (inspect, ps, rm)
LOGS_MAX_BYTES = 4 * 2**20  # of a container log read into memory (codeexec logs)


class RelayProcess:
    """A running ``docker exec -i`` process whose pipes carry protocol frames."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self.stdin: IO[bytes] = proc.stdin
        self.stdout: IO[bytes] = proc.stdout

    def close(self) -> None:
        for pipe in (self.stdin, self.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class Docker:
    """The docker CLI, one method per docker verb; inject a fake one in tests."""

    def __init__(self, binary: str | None = None) -> None:
        self._binary_name = binary or os.environ.get("CODEEXEC_DOCKER") or "docker"
        self._binary: str | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> str:
        """Which engine this CLI talks to: the same session name on two is two sessions."""
        return "\0".join(
            [self._binary_name, *(os.environ.get(k, "") for k in ("DOCKER_HOST", "DOCKER_CONTEXT"))]
        )

    @property
    def binary(self) -> str:
        if self._binary is None:
            found = shutil.which(self._binary_name)
            if found is None:
                raise DockerNotAvailable(
                    f"the docker CLI `{self._binary_name}` was not found on PATH: install "
                    "Docker (or podman), or set CODEEXEC_DOCKER to the CLI's path"
                )
            self._binary = found
        return self._binary

    # -- the subprocess seam --------------------------------------------------
    def _run(
        self,
        args: Sequence[str],
        *,
        timeout: float = _QUICK,
        what: str = "",
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, *args]
        full_env = {**os.environ, **env} if env else None
        try:
            proc = subprocess.run(
                argv,
                input=input,
                capture_output=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
                env=full_env,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise DockerError(
                f"`docker {args[0]}` did not finish within {timeout:.0f} s: the Docker engine "
                "may be overloaded or hung",
                argv=argv,
            ) from exc
        except OSError as exc:
            raise DockerNotAvailable(f"cannot run {argv[0]}: {exc}", argv=argv) from exc
        if check and proc.returncode != 0:
            raise classify(
                argv, proc.returncode, proc.stdout, proc.stderr, what or f"`docker {args[0]}`"
            )
        return proc

    # -- engine ---------------------------------------------------------------
    def version(self, timeout: float = 10.0) -> str:
        """The engine's version; raises ``DockerNotAvailable`` when it does not answer."""
        proc = self._run(
            ["version", "--format", "{{.Server.Version}}"],
            timeout=timeout,
            what="asking the Docker engine for its version",
            check=False,
        )
        if proc.returncode != 0:
            err = classify(
                [self.binary, "version"],
                proc.returncode,
                proc.stdout,
                proc.stderr,
                "reaching the Docker engine",
            )
            if not isinstance(err, DockerNotAvailable):
                err = DockerNotAvailable(
                    err.message, argv=err.argv, returncode=err.returncode, stderr=err.stderr
                )
            raise err
        return proc.stdout.strip()

    # -- images ---------------------------------------------------------------
    def image_exists(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def image_id(self, ref: str) -> str | None:
        """The image's id, or None when no such image exists locally (one call)."""
        proc = self._run(["image", "inspect", "--format", "{{.Id}}", ref], check=False)
        if proc.returncode == 0:
            return proc.stdout.strip()
        low = proc.stderr.lower()
        if "no such image" in low or "no such object" in low:
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

    def stream(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        on_line: Callable[[str], None] | None,
        env: Mapping[str, str] | None = None,
        input: str = "",
        limits: Limits | None = None,
    ) -> None:
        """Run a build step (``build``, the install's ``run``) streaming its output lines.

        ``input`` goes to its stdin: how secrets reach an install without a command
        line. ``limits`` name the memory limit when the step is killed (exit 137).

        Raises:
            ImageBuildError: the step failed or timed out (``log_tail`` holds its end).
        """
        argv = [self.binary, *args]
        tail: list[str] = []

        def keep(line: str) -> None:
            # The legacy builder colours a step's stderr with ANSI escapes; progress
            # lines go to logs, MCP notifications and error messages as plain text.
            line = _ANSI.sub("", line.rstrip("\n"))
            tail.append(line)
            del tail[:-60]
            if on_line is not None:
                on_line(line)

        returncode, timed_out = self._lines(argv, keep, timeout=timeout, env=env, input=input)
        if returncode != 0:
            raise build_error(argv, returncode, tail, timed_out, timeout, limits)

    def _lines(
        self,
        argv: list[str],
        each: Callable[[str], None],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        input: str = "",
        max_line: int = -1,
    ) -> tuple[int, bool]:
        """Run ``argv``, passing each line of its merged output to ``each`` as it comes.

        Returns the exit code and whether ``timeout`` ran out (the process was killed).
        """
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if input else subprocess.DEVNULL,
                encoding="utf-8",
                errors="replace",
                env={**os.environ, **env} if env else None,
            )
        except OSError as exc:
            raise DockerNotAvailable(f"cannot run {argv[0]}: {exc}", argv=argv) from exc
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            if input:
                assert proc.stdin is not None
                try:
                    proc.stdin.write(input)
                    proc.stdin.close()
                except OSError:
                    pass  # the process ended early; its output says why
            while line := proc.stdout.readline(max_line):
                each(line)
            returncode = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        return returncode, not timer.is_alive() and returncode < 0

    def images(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        args = Command(["images", "--no-trunc", "--format", "{{json .}}"])
        args.repeat(
            "--filter", [f"label={k}={v}" if v else f"label={k}" for k, v in labels.items()]
        )
        out = self._run(args).stdout
        refs = [json.loads(line) for line in out.splitlines() if line.strip()]
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

    # -- containers -----------------------------------------------------------
    def run(self, spec: RunSpec, secret_values: Mapping[str, str]) -> str:
        """Start a container; returns its id. Secret values travel only in our env."""
        try:
            proc = self._run(
                run_argv(spec),
                timeout=120,
                env=secret_values,
                what=f"starting container {spec.container_name}",
            )
        except NoSuchSession as exc:  # "no such object" can also mean a missing image
            raise ContainerStartError(exc.message, argv=exc.argv, stderr=exc.stderr) from exc
        except DockerError as exc:
            if isinstance(exc, DockerNotAvailable):
                raise
            raise ContainerStartError(
                exc.message, argv=exc.argv, returncode=exc.returncode, stderr=exc.stderr
            ) from exc
        return proc.stdout.strip()

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
        fmt = "\t".join(
            [
                "{{.ID}}",
                "{{.Names}}",
                '{{.Label "' + LABEL_SESSION + '"}}',
                '{{.Label "' + LABEL_POOL + '"}}',
            ]
        )
        args = Command(["ps", "--no-trunc"]).flag("--all", all)
        args.extend(["--filter", f"label={LABEL_MANAGED}=1", "--format", fmt])
        ids = []
        for line in self._run(args, what="listing containers").stdout.splitlines():
            cid, cname, session, pool = (line.split("\t") + ["", "", "", ""])[:4]
            if session == name or (pool and not session and pool_session_name(cname) == name):
                ids.append(cid)
        found = [ref for ref in self._inspect_many(ids) if ref.name == name]
        return sorted(found, key=lambda ref: not ref.running)

    def _inspect_many(self, ids: Sequence[str]) -> list[SessionRef]:
        if not ids:
            return []
        proc = self._run(["container", "inspect", *ids], check=False)
        # A container may vanish between ps and inspect; inspect still prints the rest.
        data: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
        return [parse_ref(d, self.engine) for d in data]

    def rename(self, container: str, new_name: str) -> None:
        """Rename a container (fails if ``new_name`` is taken or it is gone)."""
        self._run(["rename", container, new_name], what=f"renaming container {container}")

    def rm(self, *containers: str) -> None:
        """Remove containers at once (``rm -f``); missing ones are not an error."""
        if not containers:
            return
        proc = self._run(["rm", "--force", *containers], check=False)
        if proc.returncode != 0 and "no such container" not in proc.stderr.lower():
            raise classify(
                [self.binary, "rm"],
                proc.returncode,
                proc.stdout,
                proc.stderr,
                "removing containers",
            )

    def stop(self, container: str, grace: float = 2.0) -> None:
        self._run(["stop", "--time", str(int(grace)), container], timeout=grace + 30, check=False)

    def kill(self, container: str, signal: str = "KILL") -> None:
        self._run(["kill", "--signal", signal, container], what="killing container")

    def logs(self, container: str, tail: int | None = 200, max_bytes: int = LOGS_MAX_BYTES) -> str:
        """The last ``tail`` lines (None: all) of a container's log, at most ``max_bytes``.

        Streamed, so a huge log never sits whole in memory; older lines beyond
        ``max_bytes`` are dropped and a marker says so.
        """
        argv = [self.binary, *Command(["logs"]).opt("--tail", tail), container]
        kept: deque[str] = deque()
        size = dropped = 0

        def keep(line: str) -> None:
            nonlocal size, dropped
            kept.append(line)
            size += len(line)
            while size > max_bytes:
                size -= len(kept.popleft())
                dropped += 1

        returncode, _ = self._lines(argv, keep, timeout=_QUICK * 4, max_line=max_bytes)
        text = "".join(kept)
        if returncode != 0:
            raise classify(argv, returncode, "", text, f"reading the log of {container}")
        if dropped:
            text = f"[codeexec: {dropped} earlier lines dropped, over {max_bytes} bytes]\n{text}"
        return text

    def exec(
        self,
        container: str,
        command: Sequence[str],
        *,
        timeout: float = 60.0,
        user: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        args = Command(["exec"]).opt("--user", user)
        args.append(container)
        args.extend(command)
        return self._run(args, timeout=timeout, check=False)

    def open_relay(self, container: str, command: Sequence[str]) -> RelayProcess:
        """Start ``docker exec -i`` with binary pipes for the exec-relay transport."""
        argv = [self.binary, *relay_argv(container, command)]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
            )
        except OSError as exc:
            raise DockerNotAvailable(f"cannot run {argv[0]}: {exc}", argv=argv) from exc
        return RelayProcess(proc)
