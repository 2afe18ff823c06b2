"""The execution side of the supervisor: the worker process, the running
execution, its output (batched, capped, decoded) and its result."""

from __future__ import annotations

import errno
import os
import selectors
import time

from . import bounds, framing, notebook
from .checkpoints import RESTART_TEXT, ROLLBACK_TEXT, CheckpointError, Checkpoints
from .execution import Exec, log
from .workerproc import WorkerProcess, describe_status

DRAIN_READS = 64  # bounded drain: more than a pipe buffer, never endless
START_RETRY = 2.0  # seconds to retry starting a worker at the pids limit
GROUP_REAP = 1.0  # seconds to reap what a killed worker's process group leaves
RESTARTED = (
    "the code did not stop after an interrupt, so the Python process was "
    "restarted: all variables and imports are lost"
)


class Runner:
    """Owns the worker and at most one execution. `send(conn, frame)` delivers
    frames to a client connection (None: nowhere, the result is discarded)."""

    def __init__(
        self, sel: selectors.BaseSelector, send, frame_limit: int, limits: dict, grace: float
    ) -> None:
        self.sel = sel
        self.send = send
        self.frame_limit = frame_limit
        self.limits = limits  # the defaults; an exec request may set each
        self.grace = grace
        self.worker: WorkerProcess | None = None
        self.exec: Exec | None = None
        self.last_done = time.monotonic()
        self.checkpoints = Checkpoints(self)
        self.on_reaped = lambda pid, status: False  # other children (commands.py)

    def on_event(self, kind: str, obj) -> None:
        if kind == "pipe":
            if self.worker is not None and self.worker.pid == obj[0]:
                self._read_pipe(obj[1])
        elif kind == "ctrl":
            if self.worker is not None and self.worker.pid == obj:
                self._read_ctrl()

    def deadlines(self) -> list:
        ex = self.exec
        if ex is None:
            return []
        if ex.kill_at is not None:
            return [ex.kill_at]
        return [] if ex.deadline is None else [ex.deadline]

    def tick(self, now: float) -> None:
        ex = self.exec
        if ex is None:
            return
        if ex.reason is None and ex.deadline is not None and now >= ex.deadline:
            self.interrupt("timeout")
        elif ex.kill_at is not None and now >= ex.kill_at:
            status = "timeout" if ex.reason == "timeout" else "interrupted"
            self._replace_worker(status, "ExecutorRestarted", RESTARTED)

    def begin(
        self, conn, req_id, code: str, timeout, limits: dict, flags=None, rollback=False
    ) -> None:
        self.exec = Exec(conn, req_id, timeout, dict(self.limits, **limits))
        if self.worker is None and not self.start_worker():
            self._finish(
                "error",
                None,
                {
                    "ename": "ExecutorUnavailable",
                    "evalue": "the Python process that runs code could not be started",
                    "traceback": [],
                },
                restarted=True,
            )
            return
        if rollback:
            try:
                self.exec.rollback = self.checkpoints.park_rollback()
            except CheckpointError as exc:
                error = {"ename": "RollbackUnavailable", "evalue": str(exc), "traceback": []}
                return self._finish("error", None, error)
        assert self.worker is not None  # started just above
        try:
            self.worker.send_exec(code, dict(self.exec.limits, **(flags or {})))
        except OSError:
            self._worker_lost()

    def reset(self) -> None:
        if self.exec is not None:
            self._replace_worker(
                "interrupted",
                "ExecutorRestarted",
                "the session was reset: all variables and imports are lost",
            )
        else:
            self.kill_worker()
            self.start_worker()

    def detach(self, conn) -> None:
        """The connection closed: stop its execution, discard the result."""
        ex = self.exec
        if ex is not None and ex.conn is conn:
            ex.conn = None
            self.interrupt("disconnected")

    def start_worker(self) -> bool:
        # Right after a worker's group is killed (say, a fork bomb at the pids
        # limit) its processes still count until they are reaped: retry EAGAIN.
        deadline = time.monotonic() + START_RETRY
        while True:
            try:
                worker = WorkerProcess(self.frame_limit)
                break
            except OSError as exc:
                if exc.errno != errno.EAGAIN or time.monotonic() >= deadline:
                    log(f"could not start the worker: {exc}")
                    return False
            self.reap()
            time.sleep(0.02)
        self.install(worker)
        return True

    def install(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.sel.register(worker.ctrl_r, selectors.EVENT_READ, ("ctrl", worker.pid))
        for name, fd in worker.pipes.items():
            self.sel.register(fd, selectors.EVENT_READ, ("pipe", (worker.pid, name)))

    def _next_worker(self) -> None:
        """After a failed execution's worker is gone: its rollback copy, else a fresh one."""
        ex = self.exec
        if ex is not None and ex.rollback is not None and not ex.rolled_back:
            ex.rolled_back = self.checkpoints.roll_back(ex.rollback)
            if ex.rolled_back:
                return
        if self.worker is None:
            self.start_worker()

    def kill_worker(self) -> WorkerProcess | None:
        """Detach the worker: drain what it wrote, SIGKILL its group, close."""
        worker = self.worker
        if worker is None:
            return None
        for name in list(worker.pipes):
            self._drain(name)
        self.worker = None
        worker.kill()
        self._reap_group(worker)
        for fd in (worker.ctrl_r, *worker.pipes.values()):
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
        worker.close_fds()
        return worker

    def _replace_worker(self, status: str, ename: str, evalue: str) -> None:
        self.kill_worker()
        self._next_worker()
        if self.exec is not None:
            self._finish(
                status, None, {"ename": ename, "evalue": evalue, "traceback": []}, restarted=True
            )

    def _worker_lost(self) -> None:
        """The worker died on its own (or closed its control pipe)."""
        worker = self.worker
        if worker is None:
            return
        status = worker.wait_status(1.0)
        if status is None:  # alive but deaf: make it dead
            worker.kill()
            status = worker.wait_status(5.0)
        how = describe_status(status) if status is not None else "stopped answering"
        young = time.monotonic() - worker.started < 1.0
        self.kill_worker()
        log(f"the worker {how}")
        if self.exec is not None:
            self._next_worker()
            self._finish(
                "error",
                None,
                {
                    "ename": "ExecutorDied",
                    "evalue": f"the Python process running the code {how}, so it was "
                    "restarted: all variables and imports are lost",
                    "traceback": [],
                },
                restarted=True,
            )
        elif not young:
            self.start_worker()  # else: crash loop guard, start on next exec

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.worker is not None and pid == self.worker.pid:
                self.worker.set_status(status)
                self._worker_lost()
            else:
                self.on_reaped(pid, status)

    def _reap_group(self, worker: WorkerProcess) -> None:
        """Reap the killed group's processes now, not at the loop's next batch: as
        zombies (orphans of PID 1) they hold slots of the pids limit that the
        next worker and its code need at once."""
        deadline = time.monotonic() + GROUP_REAP
        while True:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    break
                if pid == worker.pid:
                    worker.set_status(status)
                else:
                    self.on_reaped(pid, status)
            try:
                os.killpg(worker.pid, 0)  # zombies count until reaped
            except (ProcessLookupError, PermissionError):
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.005)

    def interrupt(self, reason: str) -> None:
        ex = self.exec
        if ex is None:
            return
        if ex.reason is None:
            ex.reason = reason
            ex.kill_at = time.monotonic() + self.grace
        if self.worker is not None:
            self.worker.interrupt()

    def _read_ctrl(self) -> None:
        worker = self.worker
        assert worker is not None  # on_event checked it
        data = worker.read_ctrl()
        if data == b"":
            return
        if data is None:
            self._worker_lost()
            return
        worker.decoder.feed(data)
        while self.worker is worker:
            try:
                frame = worker.decoder.next_frame()
            except framing.FrameError:
                log("the worker sent a bad frame")
                worker.kill()
                self._worker_lost()
                return
            if frame is None:
                return
            if self.exec is None:
                if frame.get("sync"):
                    worker.ack()
                continue  # output of background threads between executions
            # Everything the worker printed before this frame is in the pipes.
            for name in worker.ready_pipes():
                self._drain(name)
            kind = frame.get("type")
            if kind == "display":
                # The worker's own cap is not trusted: user code runs there.
                data = self.exec.displays.admit(frame.get("data") or {})
                if data is not frame.get("data"):
                    self.exec.clipped = True
                if data is not None:
                    self.send(self.exec.conn, notebook.display_frame(self.exec.id, data, frame))
            elif kind in ("clear_output", "input_request"):
                forwarded = notebook.forward(self.exec, frame)
                if forwarded is not None:
                    self.send(self.exec.conn, forwarded)
            if frame.get("sync") and kind != "result":
                worker.ack()
            if kind == "result":
                self.exec.clipped = self.exec.clipped or bool(frame.get("truncated"))
                if isinstance(frame.get("execution_count"), int):
                    self.exec.count = frame["execution_count"]
                self._finish(frame.get("status", "error"), frame.get("value"), frame.get("error"))

    def _drain(self, name: str) -> None:
        for _ in range(DRAIN_READS):
            if not self._read_pipe(name):
                return

    def _read_pipe(self, name: str) -> bool:
        """Read one chunk of worker output; False when nothing more is ready."""
        worker = self.worker
        assert worker is not None  # on_event, _drain and kill_worker checked it
        if name not in worker.pipes:
            return False
        data = worker.read_pipe(name)
        if data is None:  # EOF: the worker (and its children) closed it
            fd = worker.close_pipe(name)
            self.sel.unregister(fd)
            os.close(fd)
            return False
        if data:
            self._on_output(name, data)
        return bool(data)

    def _on_output(self, name: str, data: bytes) -> None:
        ex = self.exec
        if ex is None or ex.truncated:
            return  # between executions, or past the cap: read and discard
        room = ex.limit - ex.used
        if len(data) > room:
            data = data[:room]
            ex.truncated = True
        ex.used += len(data)
        text = ex.decoder(name).decode(data, final=ex.truncated)
        if text:
            self._stream(name, text)
        if ex.truncated:
            self._stream(name, f"\n[codeexec: output truncated after {ex.limit} bytes]\n")

    def _stream(self, name: str, text: str) -> None:
        ex = self.exec
        assert ex is not None  # only while an execution runs
        self.send(ex.conn, {"type": "stream", "id": ex.id, "name": name, "text": text})

    def _finish(self, status: str, value, error, restarted: bool = False) -> None:
        ex = self.exec
        assert ex is not None  # only while an execution runs
        if not ex.truncated:
            for name, decoder in ex.decoders.items():
                text = decoder.decode(b"", final=True)
                if text:
                    self._stream(name, text)
        if ex.reason == "timeout":
            status = "timeout"
            if error is None or error.get("ename") == "KeyboardInterrupt":
                error = dict(error or {"ename": "KeyboardInterrupt", "traceback": []})
                error["evalue"] = f"the execution timed out after {ex.timeout:g} s"
        elif ex.reason is not None and status != "error":
            status = "interrupted"
        # Again, in case user code got past the worker's own cut.
        if value is not None:
            value, cut = bounds.clip_text(
                str(value), ex.limits["value_limit"] + bounds.MARGIN, "value"
            )
            ex.clipped = ex.clipped or cut
        error, cut = bounds.clip_error(error, ex.limits["error_limit"] + bounds.MARGIN)
        ex.clipped = ex.clipped or cut
        if ex.rollback is not None:
            if status != "ok" and not ex.rolled_back:
                ex.rolled_back = self.checkpoints.roll_back(ex.rollback)
            ex.rollback.close()
        if ex.rolled_back and restarted and error:
            restarted, evalue = False, str(error.get("evalue"))
            error = dict(error, evalue=evalue.replace(RESTART_TEXT, ROLLBACK_TEXT))
        self.exec = None
        self.last_done = time.monotonic()
        self.send(
            ex.conn,
            {
                "type": "result",
                "id": ex.id,
                "status": status,
                "value": value,
                "error": error,
                "duration_ms": round((time.monotonic() - ex.start) * 1000, 3),
                "truncated": ex.truncated or ex.clipped,
                "restarted": restarted,
                "rolled_back": ex.rolled_back,
                "execution_count": ex.count,
            },
        )
