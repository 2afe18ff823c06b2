"""The supervisor's side of checkpoints (docs/snapshots.md, Tier 1).

A checkpoint is a parked copy of the worker (parking.py): a forked process that
waits on a Unix socket whose other end is kept here. Restoring one kills the
current worker and hands the parked copy the pipes of a new worker; it forks,
one copy becomes the worker, the other stays parked, so a checkpoint can be
restored again and again until it is dropped (its socket closed: it exits).

Parked copies are orphans, so the supervisor reaps them: in a container it is
PID 1; elsewhere (tests) it makes itself a child subreaper. With ``files`` a
checkpoint also keeps a tar of the working directory (/workspace), up to
CODEEXEC_CHECKPOINT_FILES_LIMIT bytes, in CODEEXEC_CHECKPOINT_DIR (on /tmp,
which counts against the container's memory limit).

Exec requests with ``rollback`` park a copy before the code runs (not counted
against the cap) and wake it if the code fails, times out or kills the worker.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import tarfile
import time

from .workerproc import WorkerProcess

MAX_CHECKPOINTS = int(os.environ.get("CODEEXEC_MAX_CHECKPOINTS", "8") or 8)
FILES_LIMIT = int(os.environ.get("CODEEXEC_CHECKPOINT_FILES_LIMIT", str(100 * 1024 * 1024)))
FILES_DIR = os.environ.get("CODEEXEC_CHECKPOINT_DIR", "/tmp/.codeexec-checkpoints")
ANSWER_TIMEOUT = 10.0  # seconds for a worker or a parked copy to answer
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
PR_SET_CHILD_SUBREAPER = 36
RESTART_TEXT = "restarted: all variables and imports are lost"
ROLLBACK_TEXT = "rolled back: the session is as it was before this execution"


class CheckpointError(Exception):
    """A request that cannot be done; ``code`` goes into the error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def become_subreaper() -> None:
    """Orphans (parked copies, woken workers) become our children, not init's."""
    if os.getpid() == 1:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass


class Parked:
    def __init__(self, name: str, pid: int, chan: socket.socket, files: str | None) -> None:
        self.name = name
        self.pid = pid
        self.chan = chan
        self.files = files
        self.created = time.time()

    def alive(self) -> bool:
        # A parked copy never writes until woken: readable means end of file.
        try:
            return not select.select([self.chan], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def private_bytes(self) -> int | None:
        """Memory only this copy holds (pages it no longer shares)."""
        try:
            with open(f"/proc/{self.pid}/smaps_rollup") as f:
                text = f.read()
        except OSError:
            return None
        total = 0
        for line in text.splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
        return total

    def info(self) -> dict:
        return {
            "name": self.name,
            "created": round(self.created, 3),
            "files": self.files is not None,
            "alive": self.alive(),
            "private_bytes": self.private_bytes(),
        }

    def close(self) -> None:
        self.chan.close()  # the parked copy reads end of file and exits
        if self.files:
            try:
                os.unlink(self.files)
            except OSError:
                pass


def _recv(sock: socket.socket, what: str) -> bytes:
    sock.settimeout(ANSWER_TIMEOUT)
    try:
        data = sock.recv(256)
    except OSError as exc:
        raise CheckpointError("checkpoint_failed", f"{what} did not answer: {exc}") from None
    finally:
        sock.settimeout(None)
    if not data:
        raise CheckpointError("checkpoint_failed", f"{what} is gone")
    return data


def _detach(runner) -> None:
    """``runner.kill_worker`` without waiting for the killed process group to be
    reaped: its teardown (unmapping a copy of every page) would double a restore's
    time. The server loop reaps it, like any orphan, moments later."""
    worker = runner.worker
    if worker is None:
        return
    for name in list(worker.pipes):
        runner._drain(name)
    runner.worker = None
    worker.kill()
    for fd in (worker.ctrl_r, *worker.pipes.values()):
        try:
            runner.sel.unregister(fd)
        except (KeyError, ValueError):
            pass
    worker.close_fds()


class Checkpoints:
    """The named checkpoints of one supervisor."""

    def __init__(self, runner) -> None:
        self.runner = runner
        self.parked: dict[str, Parked] = {}
        self.counter = 0

    # -- requests (ops.py) ----------------------------------------------------

    def create(self, name, files: bool) -> dict:
        if name is None:
            self.counter += 1
            while f"cp{self.counter}" in self.parked:
                self.counter += 1
            name = f"cp{self.counter}"
        if not isinstance(name, str) or not NAME.match(name):
            raise CheckpointError(
                "bad_request",
                "a checkpoint name is 1-64 letters, digits, '_', '.' or '-', starting "
                "with a letter or digit",
            )
        if name in self.parked:
            raise CheckpointError(
                "checkpoint_exists", f"checkpoint {name!r} exists; drop it first or pick another"
            )
        if len(self.parked) >= MAX_CHECKPOINTS:
            raise CheckpointError(
                "checkpoint_limit",
                f"this session holds {MAX_CHECKPOINTS} checkpoints, the most it may; drop one "
                "(codeexec checkpoints NAME --drop TAG) and try again",
            )
        start = time.monotonic()
        archive = self._save_files(name) if files else None
        try:
            parked = self.park(name)
        except CheckpointError:
            if archive:
                os.unlink(archive)
            raise
        parked.files = archive
        self.parked[name] = parked
        answer = parked.info()
        answer["duration_ms"] = round((time.monotonic() - start) * 1000, 3)
        return answer

    def restore(self, name) -> dict:
        parked = self._get(name)
        start = time.monotonic()
        self.wake(parked)
        if parked.files:
            self._load_files(parked.files)
        answer = parked.info()
        answer["duration_ms"] = round((time.monotonic() - start) * 1000, 3)
        return answer

    def drop(self, name) -> None:
        self._get(name)
        self.parked.pop(name).close()

    def list(self) -> list:
        return [p.info() for p in sorted(self.parked.values(), key=lambda p: p.created)]

    def close(self) -> None:
        for parked in self.parked.values():
            parked.close()
        self.parked = {}

    # -- parking and waking -----------------------------------------------------

    def park(self, name: str) -> Parked:
        """Ask the (idle) worker for a parked copy of itself."""
        runner = self.runner
        if runner.worker is None and not runner.start_worker():
            raise CheckpointError("checkpoint_failed", "the worker could not be started")
        worker = runner.worker
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                socket.send_fds(worker.park, [b"checkpoint"], [theirs.fileno()])
            except OSError as exc:
                raise CheckpointError("checkpoint_failed", f"the worker is gone: {exc}") from None
            finally:
                theirs.close()
            answer = _recv(worker.park, "the worker").decode("utf-8", "replace")
            if not answer.startswith("ok "):
                raise CheckpointError("checkpoint_failed", f"the worker could not fork: {answer}")
            return Parked(name, int(answer.split()[1]), ours, None)
        except BaseException:
            ours.close()
            raise

    def wake(self, parked: Parked) -> None:
        """Replace the worker with a fresh copy of the parked one."""
        runner = self.runner
        if not parked.alive():
            raise CheckpointError(
                "checkpoint_lost",
                f"checkpoint {parked.name!r} is lost: its process was killed (probably at "
                "the memory limit); drop it",
            )
        _detach(runner)

        def hand_over(fds: list) -> int:
            try:
                socket.send_fds(parked.chan, [b"wake"], fds)
            except OSError as exc:
                raise CheckpointError(
                    "checkpoint_lost", f"checkpoint {parked.name!r}: {exc}"
                ) from None
            answer = _recv(parked.chan, f"checkpoint {parked.name!r}").decode("utf-8", "replace")
            if not answer.startswith("worker "):
                raise CheckpointError("checkpoint_failed", f"could not wake it: {answer}")
            return int(answer.split()[1])

        try:
            worker = WorkerProcess(runner.frame_limit, wake=hand_over)
        except (CheckpointError, OSError, ValueError) as exc:
            runner.start_worker()
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError("checkpoint_failed", str(exc)) from None
        runner.install(worker)

    # -- rollback (exec with "rollback") ------------------------------------------

    def park_rollback(self) -> Parked:
        return self.park("(rollback)")

    def roll_back(self, parked: Parked) -> bool:
        """Wake the rollback copy; False if that failed (a fresh worker then runs)."""
        try:
            self.wake(parked)
            return True
        except CheckpointError:
            return False

    # -- names and files ----------------------------------------------------------

    def _get(self, name) -> Parked:
        parked = self.parked.get(name) if isinstance(name, str) else None
        if parked is None:
            have = ", ".join(sorted(self.parked)) or "none"
            raise CheckpointError(
                "no_such_checkpoint", f"no checkpoint named {name!r} (this session has: {have})"
            )
        return parked

    def _save_files(self, name: str) -> str:
        root = os.getcwd()
        total = 0
        for dirpath, _dirs, names in os.walk(root):
            for entry in names:
                try:
                    total += os.lstat(os.path.join(dirpath, entry)).st_size
                except OSError:
                    pass
        if total > FILES_LIMIT:
            raise CheckpointError(
                "files_too_large",
                f"{root} holds {total} bytes, more than the {FILES_LIMIT} a checkpoint with "
                "files keeps; remove files or checkpoint without files",
            )
        os.makedirs(FILES_DIR, mode=0o700, exist_ok=True)
        path = os.path.join(FILES_DIR, f"{name}-{os.getpid()}-{time.monotonic_ns()}.tar")
        try:
            with tarfile.open(path, "w") as tar:
                for entry in sorted(os.listdir(root)):
                    tar.add(os.path.join(root, entry), arcname=entry)
        except OSError as exc:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise CheckpointError("checkpoint_failed", f"could not save the files: {exc}") from None
        return path

    def _load_files(self, path: str) -> None:
        root = os.getcwd()
        try:
            with tarfile.open(path, "r") as tar:
                members = tar.getmembers()
                for m in members:
                    if m.name.startswith("/") or ".." in m.name.split("/"):
                        raise CheckpointError("checkpoint_failed", f"bad path in archive: {m.name}")
                for entry in os.listdir(root):
                    full = os.path.join(root, entry)
                    if os.path.isdir(full) and not os.path.islink(full):
                        shutil.rmtree(full, ignore_errors=True)
                    else:
                        os.unlink(full)
                tar.extractall(root, members)
        except (OSError, tarfile.TarError) as exc:
            raise CheckpointError(
                "checkpoint_failed", f"could not restore the files: {exc}"
            ) from None
