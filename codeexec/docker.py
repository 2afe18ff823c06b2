"""The one place that runs the docker CLI.

Every call is an argument list (never a shell string) with a timeout; stdout and
stderr are always captured, because under ``codeexec mcp`` our stdout is the MCP
wire. The binary is ``$CODEEXEC_DOCKER`` (default ``docker``), so ``DOCKER_HOST``,
docker contexts and podman work unchanged. A few quick calls on hot paths (``rename``,
the lookups' ``ps`` and ``inspect``) ask the engine's API instead where it is surely
the CLI's engine (``_engineapi.py``).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from ._buildargs import (  # re-exported: callers import them from here
    BUILD_UID as BUILD_UID,
    LABEL_CACHE as LABEL_CACHE,
    build_argv as build_argv,
    build_error as build_error,
    cache_volume_name as cache_volume_name,
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
    engine_args as engine_args,
    image_info as image_info,
    parse_inspect as parse_inspect,
    parse_ref as parse_ref,
    pool_session_name as pool_session_name,
    published_port as published_port,
    relay_argv as relay_argv,
    run_argv as run_argv,
)
from ._dockerverbs import LOGS_MAX_BYTES as LOGS_MAX_BYTES, ImageVerbs, SessionLookup
from ._engineapi import NO_ANSWER, rename_url
from ._engineargs import started_id
from ._engineverbs import EngineVerbs
from ._fds import (
    DESCRIPTOR_HEADROOM as DESCRIPTOR_HEADROOM,
    check_descriptors as check_descriptors,
    out_of_descriptors,
)
from ._snapverbs import SnapshotVerbs
from .errors import (
    ContainerStartError,
    DockerError,
    DockerNotAvailable,
    NoSuchSession,
)
from .models import Limits

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_QUICK = 30.0  # seconds for calls that answer at once (inspect, ps, rm)


def _cannot_run(argv: Sequence[str], exc: OSError) -> DockerError:
    if exc.errno in (errno.EMFILE, errno.ENFILE):  # ENFILE: the system's table is full
        return out_of_descriptors()
    return DockerNotAvailable(f"cannot run {argv[0]}: {exc}", argv=argv)


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


class Docker(EngineVerbs, ImageVerbs, SessionLookup, SnapshotVerbs):
    """The docker CLI, one method per docker verb; inject a fake one in tests.

    The verbs that read images and find sessions are in ``_dockerverbs.py``.
    """

    def __init__(
        self, binary: str | None = None, *, host: str = "", context: str = "", name: str = ""
    ) -> None:
        """``host`` (a DOCKER_HOST value) or ``context`` (a docker context) picks an
        engine other than the environment's; ``name`` is what ``ls`` calls it."""
        self._binary_name = binary or os.environ.get("CODEEXEC_DOCKER") or "docker"
        self._binary: str | None = None
        self._lock = threading.Lock()
        self.host, self.context = host, context
        self.name = name or context or host or "default"
        self._global = engine_args(host, context)

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
        argv = self.argv(args)
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
                cwd=self.spawn_cwd,
            )
        except subprocess.TimeoutExpired as exc:
            raise DockerError(
                f"`docker {args[0]}` did not finish within {timeout:.0f} s: the Docker engine "
                "may be overloaded or hung",
                argv=argv,
            ) from exc
        except OSError as exc:
            raise _cannot_run(argv, exc) from exc
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
                self.argv(["version"]),
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

    # -- build steps ----------------------------------------------------------
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
        argv = self.argv(args)
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
                cwd=self.spawn_cwd,
            )
        except OSError as exc:
            raise _cannot_run(argv, exc) from exc
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

    # -- containers -----------------------------------------------------------
    def run(self, spec: RunSpec, secret_values: Mapping[str, str]) -> str:
        """Start a container; returns its id. Secret values travel only in our env."""
        try:
            proc = self._run(
                run_argv(spec, self.flavour),
                timeout=120,
                env=secret_values,
                what=f"starting container {spec.container_name}",
            )
        except NoSuchSession as exc:  # "no such object" can also mean a missing image
            raise ContainerStartError(exc.message, argv=exc.argv, stderr=exc.stderr) from exc
        except DockerError as exc:
            if isinstance(exc, DockerNotAvailable):
                raise
            self._failed_start(spec, started_id(exc.stdout))
            raise ContainerStartError(
                exc.message, argv=exc.argv, returncode=exc.returncode, stderr=exc.stderr,
                stdout=exc.stdout,
            ) from exc  # fmt: skip
        return proc.stdout.strip()

    def _failed_start(self, spec: RunSpec, container_id: str) -> None:
        """Leave nothing of a start that failed: the container, a gVisor sandbox."""
        if container_id:
            try:
                self.rm(container_id)
                self.reap(spec.image, [container_id], runtime=spec.runtime)
            except DockerError:
                pass  # the start's own error says more; `codeexec gc` reaps later

    def rename(self, container: str, new_name: str) -> None:
        """Rename a container (fails if ``new_name`` is taken or it is gone)."""
        args, what = ["rename", container, new_name], f"renaming container {container}"
        if self._api("POST", rename_url(container, new_name), args, what=what) is NO_ANSWER:
            self._run(args, what=what)

    def rm(self, *containers: str) -> None:
        """Remove containers at once (``rm -f``); missing (or going) ones are no error."""
        if not containers:
            return
        proc = self._run(["rm", "--force", *containers], check=False)
        err = proc.stderr.lower()
        if proc.returncode and "no such container" not in err and "in progress" not in err:
            raise classify(
                self.argv(["rm"]),
                proc.returncode,
                proc.stdout,
                proc.stderr,
                "removing containers",
            )

    def stop(self, container: str, grace: float = 2.0) -> None:
        self._run(["stop", "--time", str(int(grace)), container], timeout=grace + 30, check=False)

    def kill(self, container: str, signal: str = "KILL") -> None:
        self._run(["kill", "--signal", signal, container], what="killing container")

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

    def pipe(self, args: Sequence[str], *, source: IO[bytes] | None = None,
             sink: IO[bytes] | None = None, timeout: float, what: str) -> None:  # fmt: skip
        """Run ``args`` with binary files as stdin/stdout (snapshots stream through)."""
        argv = self.argv(args)
        try:
            proc = subprocess.run(argv, stdin=source or subprocess.DEVNULL,
                                  stdout=sink or subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=timeout, cwd=self.spawn_cwd)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise DockerError(f"{what} did not finish within {timeout:.0f} s", argv=argv) from exc
        except OSError as exc:
            raise _cannot_run(argv, exc) from exc
        if proc.returncode:
            err = proc.stderr.decode("utf-8", "replace")
            raise classify(argv, proc.returncode, "", err, what)

    def open_relay(self, container: str, command: Sequence[str]) -> RelayProcess:
        """Start ``docker exec -i`` with binary pipes for the exec-relay transport."""
        argv = self.argv(relay_argv(container, command))
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
                cwd=self.spawn_cwd,
            )
        except OSError as exc:
            raise _cannot_run(argv, exc) from exc
        return RelayProcess(proc)
