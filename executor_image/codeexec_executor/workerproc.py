"""The supervisor's handle on the worker process: spawn, pipes, signals, death."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

from . import framing

PIPE_READ = 64 * 1024
CTRL_READ = 256 * 1024


# Started by path, not with -m: -m would put the cwd (the code's /workspace) first
# on sys.path (see __main__.py); -s keeps the user site directory off it too.
WORKER_ARGV = (
    "-s",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py"),
    "worker",
)


def _prepare_child() -> None:
    # The worker starts with SIGINT ignored, so an interrupt that arrives while
    # it is still starting cannot kill it; it installs its own handler.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _expendable(pid: int) -> None:
    # At the memory limit the kernel must kill the worker (and what it started),
    # never the supervisor: tmpfs files also count against the limit, so killing
    # the worker does not always free enough, and the supervisor would be next.
    # Written from here once the worker runs its own program: before its exec it
    # is as non-dumpable as the supervisor, and its /proc files are not its own.
    try:
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def describe_status(status: int) -> str:
    """How a process ended, in words a person or a model can act on."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        text = f"was killed by signal {name}"
        if sig == signal.SIGKILL:
            text += " (probably out of memory: the container's memory limit)"
        elif sig == signal.SIGSEGV:
            text += " (segmentation fault)"
        return text
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"ended (wait status {status})"


class WorkerProcess:
    """One worker: a `python -m codeexec_executor worker` in its own session.

    ctrl_w (blocking) carries exec frames to it; ctrl_r, and the stdout/stderr
    pipes (all non-blocking) are read by the supervisor's select loop. ack_w
    gets one byte per synchronous display frame, once everything the worker
    printed before it has been forwarded (so display() keeps its place).
    """

    def __init__(self, frame_limit: int, wake=None) -> None:
        """Spawn a fresh worker; or, with ``wake`` (a checkpoint's, see
        checkpoints.py), hand the new pipes to a parked copy that becomes the
        worker: ``wake(child_fds)`` returns its pid."""
        to_worker_r, self.ctrl_w = os.pipe()
        ack_r, self.ack_w = os.pipe()
        self.ctrl_r, from_worker_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.park, park_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child_ends = (to_worker_r, from_worker_w, ack_r, out_w, err_w, park_child.fileno())
        self.proc = None
        try:
            if wake is None:
                self.proc = self._spawn(child_ends)
                self.pid = self.proc.pid
            else:
                self.pid = wake(list(child_ends))
        except BaseException:
            for fd in (self.ctrl_w, self.ack_w, self.ctrl_r, out_r, err_r):
                os.close(fd)
            self.park.close()
            raise
        finally:
            for fd in child_ends[:-1]:
                os.close(fd)
            park_child.close()
        if wake is None:
            _expendable(self.pid)  # Popen returns once the exec succeeded
        self.started = time.monotonic()
        self.status: int | None = None  # wait status once reaped
        self.pipes = {"stdout": out_r, "stderr": err_r}
        for fd in (self.ctrl_r, self.ack_w, out_r, err_r):
            os.set_blocking(fd, False)
        # One poll(0) tells which output pipes hold data: cheaper than a read
        # that fails with EAGAIN on each.
        self.pipe_poll = select.poll()
        for fd in self.pipes.values():
            self.pipe_poll.register(fd, select.POLLIN)
        self.decoder = framing.FrameDecoder(limit=2 * frame_limit)
        # Control frames are read into this buffer: a fresh os.read(fd, 1 MiB)
        # would allocate (mmap) and free a large buffer on every frame.
        self.ctrl_buf = bytearray(CTRL_READ)

    @staticmethod
    def _spawn(child_ends: tuple) -> subprocess.Popen:
        env = dict(os.environ)
        env.pop("CODEEXEC_TOKEN", None)  # user code has no use for the session token
        env.update(_session_env(env.pop("CODEEXEC_ENV", "")))  # start(env=...)
        env["CODEEXEC_CTRL_FDS"] = ",".join(str(fd) for fd in child_ends[:3] + child_ends[5:])
        env.setdefault("MPLBACKEND", "Agg")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return subprocess.Popen(
            [sys.executable, *WORKER_ARGV],
            stdin=subprocess.DEVNULL,
            stdout=child_ends[3],
            stderr=child_ends[4],
            pass_fds=child_ends[:3] + child_ends[5:],
            start_new_session=True,
            preexec_fn=_prepare_child,
            env=env,
        )

    def send_exec(self, code: str, limits: dict) -> None:
        """Hand a cell and its caps to the worker; raises OSError if it is gone.
        Blocking is fine: between cells the worker's main thread is always reading."""
        framing.write_frame_fd(self.ctrl_w, dict(limits, op="exec", code=code))

    def ack(self) -> None:
        try:
            os.write(self.ack_w, b"\0")
        except OSError:  # gone, or (impossibly) a full pipe: never block
            pass

    def interrupt(self) -> None:
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the worker and everything it started in its process group."""
        for target in (
            lambda: os.killpg(self.pid, signal.SIGKILL),
            lambda: os.kill(self.pid, signal.SIGKILL),
        ):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                pass

    def ready_pipes(self) -> list:
        """Names of the output pipes with data (or EOF) ready, stdout first."""
        if not self.pipes:
            return []
        ready = {fd for fd, _ in self.pipe_poll.poll(0)}
        if not ready:
            return []
        return [name for name, fd in self.pipes.items() if fd in ready]

    def close_pipe(self, name: str) -> int:
        """Forget an output pipe (at EOF); returns its fd for the caller to close."""
        fd = self.pipes.pop(name)
        try:
            self.pipe_poll.unregister(fd)
        except KeyError:
            pass
        return fd

    def read_pipe(self, name: str) -> bytes | None:
        """One non-blocking read: data, b"" if nothing is ready, None at EOF."""
        fd = self.pipes.get(name)
        if fd is None:
            return None
        try:
            data = os.read(fd, PIPE_READ)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:
            return None
        return data

    def read_ctrl(self) -> bytes | None:
        try:
            size = os.readv(self.ctrl_r, [self.ctrl_buf])
        except BlockingIOError:
            return b""
        except OSError:
            return None
        return bytes(self.ctrl_buf[:size]) if size else None

    def wait_status(self, timeout: float) -> int | None:
        """Wait up to timeout for the worker to exit (it is already reaped if
        the supervisor's SIGCHLD handling got it first)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.set_status(status)
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.005)
        return self.status

    def set_status(self, status: int) -> None:
        self.status = status
        if self.proc is None:  # a woken checkpoint: no Popen to tell
            return
        # Keep subprocess from polling a pid that was already reaped.
        self.proc.returncode = (
            -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        )

    def close_fds(self) -> None:
        for fd in (self.ctrl_w, self.ack_w, self.ctrl_r, *self.pipes.values()):
            try:
                os.close(fd)
            except OSError:
                pass
        self.pipes = {}
        self.park.close()


def _session_env(text: str) -> dict:
    """The variables the session was started with (JSON from the host), as strings."""
    try:
        env = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(env, dict):
        return {}
    return {
        k: v
        for k, v in env.items()
        if isinstance(k, str) and isinstance(v, str) and not k.startswith("CODEEXEC_")
    }
