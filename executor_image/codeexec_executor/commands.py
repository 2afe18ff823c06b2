"""Shell commands as a first-class request: the ``run`` op (docs/protocol.md).

The supervisor spawns the program itself, as the session's user and inside the
container's limits, in a process group of its own, and streams its stdout and
stderr as ``stream`` frames over the connection that asked, then one ``exit``
frame. No shell runs unless the caller's argv starts one (``sh -c``). Its pipes
are read by the supervisor's select loop, like the worker's; a timeout, an
interrupt or a lost connection signal the whole group. Commands run beside the
Python worker: a running execution does not block them, nor they it.
"""

from __future__ import annotations

import codecs
import os
import selectors
import signal
import subprocess
import time

from .workerproc import PIPE_READ, _expendable

MAX_COMMANDS = 32  # at once, across connections
EXIT_DRAIN = 1.0  # seconds to read what a finished command's children still write
STOP_GRACE = 2.0  # seconds between SIGTERM/SIGINT and SIGKILL of the group


class Command:
    def __init__(self, conn, req_id, proc: subprocess.Popen, pipes: dict, timeout, limit: int):
        self.conn = conn
        self.id = req_id
        self.proc = proc
        self.pid = proc.pid
        self.pipes = pipes  # name -> fd, until EOF
        self.start = time.monotonic()
        self.deadline = None if timeout is None else self.start + timeout
        self.limit = limit
        self.used = 0
        self.truncated = False
        self.reason: str | None = None  # "timeout" | "interrupted" | "disconnected"
        self.kill_at: float | None = None
        self.status: int | None = None  # wait status once reaped
        self.drain_until: float | None = None
        self.decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in pipes
        }


def _problem(req: dict) -> str | None:
    """Why a ``run`` request is malformed, or None."""
    argv, cwd, env = req.get("argv"), req.get("cwd"), req.get("env")
    timeout, limit = req.get("timeout"), req.get("output_limit")
    if not isinstance(req.get("id"), str):
        return "'id' must be a string"
    if (
        not isinstance(argv, list)
        or not argv
        or not all(isinstance(a, str) and "\0" not in a for a in argv)
        or not argv[0]
    ):
        return "'argv' must be a non-empty list of strings without NUL"
    if cwd is not None and (not isinstance(cwd, str) or not cwd or "\0" in cwd):
        return "'cwd' must be a non-empty string or null"
    if env is not None and (
        not isinstance(env, dict)
        or not all(
            isinstance(k, str) and isinstance(v, str) and k and "=" not in k
            and "\0" not in k + v
            for k, v in env.items()
        )
    ):  # fmt: skip
        return "'env' must map names (without '=') to strings"
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        return "'timeout' must be a number of seconds >= 0 or null"
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        return "'output_limit' must be an integer >= 0 or null"
    return None


class Commands:
    """The running commands; ``send(conn, frame)`` delivers frames (see runner.py)."""

    def __init__(self, sel: selectors.BaseSelector, send, output_limit: int) -> None:
        self.sel = sel
        self.send = send
        self.output_limit = output_limit
        self.running: dict[int, Command] = {}  # by pid
        self.last_done = 0.0  # when the last one ended (the idle timeout counts from then)

    def begin(self, conn, req: dict):
        """Start the request's program; an error frame (dict) when it cannot run."""
        problem = _problem(req)
        req_id = req.get("id")
        if problem:
            return {"type": "error", "id": req_id, "code": "bad_request", "message": problem}
        if len(self.running) >= MAX_COMMANDS:
            message = f"{MAX_COMMANDS} commands run already; wait for one to end"
            return {"type": "error", "id": req_id, "code": "busy", "message": message}
        env = dict(os.environ)
        env.pop("CODEEXEC_TOKEN", None)  # the session's code has no use for it
        env.update(req.get("env") or {})
        cwd = req.get("cwd")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = subprocess.Popen(
                req["argv"], stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                cwd=cwd, env=env, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            return self._not_started(conn, req_id, exc, cwd)
        finally:
            for fd in (out_w, err_w):  # the child holds its ends now
                os.close(fd)
        _expendable(proc.pid)  # at the memory limit, the kernel kills it, not PID 1
        limit = req.get("output_limit")
        pipes = {"stdout": out_r, "stderr": err_r}
        cmd = Command(conn, req_id, proc, pipes, req.get("timeout"),
                      self.output_limit if limit is None else limit)  # fmt: skip
        self.running[cmd.pid] = cmd
        for name, fd in pipes.items():
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, ("cmd", (cmd.pid, name)))
        return None

    def _not_started(self, conn, req_id, exc: OSError, cwd) -> None:
        """A program that cannot start ends like it would in a shell: 127 or 126."""
        if cwd is not None and exc.filename == cwd:
            text, code = f"codeexec: cannot use {cwd} as the working directory: {exc.strerror}", 2
        else:
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            text = f"codeexec: cannot run {exc.filename or 'the command'}: {exc.strerror}"
        self.send(conn, {"type": "stream", "id": req_id, "name": "stderr", "text": text + "\n"})
        self.send(conn, {"type": "exit", "id": req_id, "exit_code": code, "signal": None,
                         "duration_ms": 0.0, "timed_out": False, "interrupted": False,
                         "truncated": False})  # fmt: skip

    # -- the loop's hooks ---------------------------------------------------------

    def on_event(self, obj) -> None:
        pid, name = obj
        cmd = self.running.get(pid)
        if cmd is not None and name in cmd.pipes:
            self._read(cmd, name)
            self._maybe_finish(cmd)

    def reaped(self, pid: int, status: int) -> bool:
        """The loop reaped ``pid``: True if it was a command's."""
        cmd = self.running.get(pid)
        if cmd is None:
            return False
        cmd.status = status
        cmd.proc.returncode = status  # Popen must not wait for it again
        cmd.drain_until = time.monotonic() + EXIT_DRAIN
        for name in list(cmd.pipes):
            for _ in range(64):
                if not self._read(cmd, name):
                    break
        self._maybe_finish(cmd)
        return True

    def poll(self) -> None:
        """Reap the commands that ended now (after a SIGCHLD, or their pipes closed),
        not at the loop's next batch of reaping, which may be 0.25 s away."""
        for pid, cmd in list(self.running.items()):
            if cmd.status is None:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if done:
                    self.reaped(pid, status)

    def deadlines(self) -> list:
        out = []
        for cmd in self.running.values():
            for when in (cmd.deadline if cmd.reason is None else None, cmd.kill_at,
                         cmd.drain_until):  # fmt: skip
                if when is not None:
                    out.append(when)
        return out

    def tick(self, now: float) -> None:
        for cmd in list(self.running.values()):
            if cmd.status is not None:
                if cmd.drain_until is not None and now >= cmd.drain_until:
                    self._finish(cmd)  # children that keep the pipes open are left be
            elif cmd.reason is None and cmd.deadline is not None and now >= cmd.deadline:
                self.stop(cmd, "timeout", signal.SIGTERM)
            elif cmd.kill_at is not None and now >= cmd.kill_at:
                cmd.kill_at = None
                self._killpg(cmd, signal.SIGKILL)

    def interrupt(self, conn, req_id) -> bool:
        """SIGINT to the group of the command ``req_id`` started on ``conn``."""
        for cmd in self.running.values():
            if cmd.conn is conn and cmd.id == req_id and cmd.status is None:
                self.stop(cmd, "interrupted", signal.SIGINT)
                return True
        return False

    def detach(self, conn) -> None:
        """The connection closed: kill its commands' groups, send nothing more."""
        for cmd in list(self.running.values()):
            if cmd.conn is conn:
                cmd.conn = None
                if cmd.status is None:
                    cmd.reason = cmd.reason or "disconnected"
                    self._killpg(cmd, signal.SIGKILL)

    def stop(self, cmd: Command, reason: str, sig: int) -> None:
        if cmd.reason is None:
            cmd.reason = reason
            cmd.kill_at = time.monotonic() + STOP_GRACE
        self._killpg(cmd, sig)

    def kill_all(self) -> None:
        for cmd in self.running.values():
            self._killpg(cmd, signal.SIGKILL)

    # -- internals ----------------------------------------------------------------

    def _killpg(self, cmd: Command, sig: int) -> None:
        try:
            os.killpg(cmd.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _read(self, cmd: Command, name: str) -> bool:
        fd = cmd.pipes[name]
        try:
            data = os.read(fd, PIPE_READ)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self._close_pipe(cmd, name)
            return False
        if not cmd.truncated:
            room = cmd.limit - cmd.used
            if len(data) > room:
                data, cmd.truncated = data[:room], True
            cmd.used += len(data)
            text = cmd.decoders[name].decode(data, final=cmd.truncated)
            if text:
                self._stream(cmd, name, text)
            if cmd.truncated:
                self._stream(cmd, name, f"\n[codeexec: output truncated after {cmd.limit} bytes]\n")
        return True

    def _stream(self, cmd: Command, name: str, text: str) -> None:
        self.send(cmd.conn, {"type": "stream", "id": cmd.id, "name": name, "text": text})

    def _close_pipe(self, cmd: Command, name: str) -> None:
        fd = cmd.pipes.pop(name)
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass
        os.close(fd)

    def _maybe_finish(self, cmd: Command) -> None:
        if cmd.status is None and not cmd.pipes:
            self.poll()  # both pipes closed: it has most likely exited
        if cmd.status is not None and not cmd.pipes and cmd.pid in self.running:
            self._finish(cmd)

    def _finish(self, cmd: Command) -> None:
        del self.running[cmd.pid]
        self.last_done = time.monotonic()
        if cmd.reason is not None:
            # Stopped on purpose: what is left of its group goes too (a background
            # job of `sh -c` ignores SIGINT, one may ignore SIGTERM).
            self._killpg(cmd, signal.SIGKILL)
        for name in list(cmd.pipes):
            self._close_pipe(cmd, name)
        if not cmd.truncated:
            for name, decoder in cmd.decoders.items():
                text = decoder.decode(b"", final=True)
                if text:
                    self._stream(cmd, name, text)
        status = cmd.status or 0
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = 128 + sig if sig is not None else os.WEXITSTATUS(status)
        self.send(
            cmd.conn,
            {
                "type": "exit",
                "id": cmd.id,
                "exit_code": code,
                "signal": sig,
                "duration_ms": round((time.monotonic() - cmd.start) * 1000, 3),
                "timed_out": cmd.reason == "timeout",
                "interrupted": cmd.reason == "interrupted",
                "truncated": cmd.truncated,
            },
        )
