"""The supervisor: owns the TCP socket, the handshake, output batching,
timeouts and worker restarts (docs/protocol.md).

One single-threaded selectors loop over non-blocking sockets and pipes, so a
half-sent frame or a client that does not read never blocks anyone else.
"""

from __future__ import annotations

import codecs
import hmac
import os
import platform
import selectors
import signal
import socket
import sys
import time

from . import __version__, files, framing
from .workerproc import WorkerProcess, describe_status

PROTOCOL = 1
RECV_SIZE = 256 * 1024
SEND_BUFFER_LIMIT = 64 * 1024 * 1024
LINGER = 2.0  # seconds to drain a client's unread bytes before closing
DRAIN_READS = 64  # bounded drain: more than a pipe buffer, never endless
RESTARTED = ("the code did not stop after an interrupt, so the Python process was "
             "restarted: all variables and imports are lost")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def log(message: str) -> None:
    sys.stderr.write("codeexec: %s\n" % message)
    sys.stderr.flush()


class Conn:
    def __init__(self, sock: socket.socket, frame_limit: int, hello_deadline: float):
        self.sock = sock
        self.decoder = framing.FrameDecoder(frame_limit)
        self.out = bytearray()
        self.authed = False
        self.hello_deadline = hello_deadline
        self.closing = False  # answer sent; close once flushed
        self.close_at: float | None = None  # when closing: close by then anyway
        self.shut = False  # our side half-closed; discarding what arrives
        self.closed = False


class Exec:
    def __init__(self, conn: Conn, req_id, timeout, limit: int):
        self.conn: Conn | None = conn
        self.id = req_id
        self.start = time.monotonic()
        self.timeout = timeout
        self.deadline = None if timeout is None else self.start + timeout
        self.limit = limit
        self.used = 0
        self.truncated = False
        self.reason: str | None = None  # "timeout" | "interrupted" | "disconnected"
        self.kill_at: float | None = None
        self.decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for name in ("stdout", "stderr")
        }


class Server:
    def __init__(self, token: str) -> None:
        self.token = token.encode("utf-8")
        self.host = os.environ.get("CODEEXEC_HOST", "0.0.0.0")
        self.port = int(os.environ.get("CODEEXEC_PORT", "8888"))
        self.idle_timeout = _env_float("CODEEXEC_IDLE_TIMEOUT", 0.0)
        self.hello_timeout = _env_float("CODEEXEC_HELLO_TIMEOUT", 5.0)
        self.grace = _env_float("CODEEXEC_INTERRUPT_GRACE", 2.0)
        self.frame_limit = framing.frame_limit_from_env()
        self.output_limit = int(_env_float("CODEEXEC_OUTPUT_LIMIT", 16 * 1024 * 1024))
        self.sel = selectors.DefaultSelector()
        self.conns: set[Conn] = set()
        self.worker: WorkerProcess | None = None
        self.exec: Exec | None = None
        self.stopping = False
        self.last_activity = time.monotonic()

    # -- lifecycle -------------------------------------------------------

    def serve(self) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, ("listen", listener))
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self.sel.register(wake_r, selectors.EVENT_READ, ("wake", wake_r))
        signal.set_wakeup_fd(wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop to reap
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_stop_signal)
        sys.stderr.write("CODEEXEC_LISTENING %d\n" % listener.getsockname()[1])
        sys.stderr.flush()
        self._start_worker()
        try:
            while not self.stopping:
                self._reap()
                if self._tick():
                    break
                for key, mask in self.sel.select(self._next_timeout()):
                    self._on_event(key.data, mask)
        finally:
            if self.worker is not None:
                self.worker.kill()
            self._reap()
        return 0

    def _on_stop_signal(self, signum, frame) -> None:
        self.stopping = True

    def _on_event(self, data, mask: int) -> None:
        kind, obj = data
        if kind == "conn":
            if obj.closed:
                return
            if mask & selectors.EVENT_WRITE:
                self._flush(obj)
            if mask & selectors.EVENT_READ and not obj.closed:
                self._on_readable(obj)
        elif kind == "pipe":
            if self.worker is not None and self.worker.pid == obj[0]:
                self._read_pipe(obj[1])
        elif kind == "ctrl":
            if self.worker is not None and self.worker.pid == obj:
                self._read_ctrl()
        elif kind == "listen":
            self._accept(obj)
        elif kind == "wake":
            try:
                while obj.recv(4096):
                    pass
            except OSError:
                pass

    def _next_timeout(self) -> float | None:
        now = time.monotonic()
        deadlines = [c.hello_deadline for c in self.conns
                     if not c.authed and not c.closing]
        deadlines += [c.close_at for c in self.conns if c.close_at is not None]
        ex = self.exec
        if ex is not None:
            if ex.reason is None and ex.deadline is not None:
                deadlines.append(ex.deadline)
            if ex.kill_at is not None:
                deadlines.append(ex.kill_at)
        elif self.idle_timeout > 0:
            deadlines.append(self.last_activity + self.idle_timeout)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _tick(self) -> bool:
        """Fire due timers; True when the supervisor should exit (idle)."""
        now = time.monotonic()
        for conn in list(self.conns):
            if conn.close_at is not None and now >= conn.close_at:
                self._close(conn)
            elif not conn.authed and not conn.closing and now >= conn.hello_deadline:
                self._fail(conn, "unauthorized",
                           "no valid hello within %g s" % self.hello_timeout)
        ex = self.exec
        if ex is not None:
            if ex.reason is None and ex.deadline is not None and now >= ex.deadline:
                self._interrupt("timeout")
            elif ex.kill_at is not None and now >= ex.kill_at:
                status = "timeout" if ex.reason == "timeout" else "interrupted"
                self._replace_worker(status, "ExecutorRestarted", RESTARTED)
        elif self.idle_timeout > 0 and now - self.last_activity >= self.idle_timeout:
            log("idle for %g s, exiting" % self.idle_timeout)
            return True
        return False

    # -- connections -----------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving the others
                log("accept failed: %s" % exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock, self.frame_limit, time.monotonic() + self.hello_timeout)
            self.conns.add(conn)
            self.sel.register(sock, selectors.EVENT_READ, ("conn", conn))

    def _on_readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        if conn.closing:
            return  # already answered with an error: discard the rest
        conn.decoder.feed(data)
        while not conn.closed and not conn.closing:
            try:
                frame = conn.decoder.next_frame()
            except framing.FrameError as exc:
                self._fail(conn, exc.code, str(exc))
                return
            if frame is None:
                return
            self.last_activity = time.monotonic()
            self._dispatch(conn, frame)

    def send(self, conn: Conn | None, obj: dict) -> None:
        if conn is None or conn.closed:
            return
        data = framing.encode(obj)
        if conn.out and len(conn.out) + len(data) > SEND_BUFFER_LIMIT:
            log("dropping a connection that does not read its output")
            self._close(conn)
            return
        conn.out += data
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            del conn.out[:sent]
        if conn.closing and not conn.out and not conn.shut:
            # Half-close, then read and discard what the client still sends, so
            # the kernel does not answer unread data with a reset that could
            # destroy the error frame in flight.
            conn.shut = True
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(conn)
                return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if self.sel.get_key(conn.sock).events != events:
            self.sel.modify(conn.sock, events, ("conn", conn))

    def _fail(self, conn: Conn, code: str, message: str, req_id=None) -> None:
        """Answer with an error frame, then close the connection."""
        self._error(conn, code, message, req_id)
        if not conn.closed and not conn.closing:
            conn.closing = True
            conn.close_at = time.monotonic() + LINGER
            self._flush(conn)

    def _error(self, conn: Conn, code: str, message: str, req_id=None) -> None:
        frame = {"type": "error", "code": code, "message": message}
        if req_id is not None:
            frame["id"] = req_id
        self.send(conn, frame)

    def _close(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.conns.discard(conn)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        conn.out = bytearray()
        ex = self.exec
        if ex is not None and ex.conn is conn:
            ex.conn = None  # the result has nowhere to go: stop the code
            self._interrupt("disconnected")

    # -- requests --------------------------------------------------------

    def _dispatch(self, conn: Conn, req: dict) -> None:
        op = req.get("op")
        req_id = req.get("id")
        if not conn.authed and op != "hello":
            self._fail(conn, "unauthorized", "the first frame must be a hello", req_id)
            return
        if not isinstance(op, str):
            self._error(conn, "bad_request", "the frame has no string 'op'", req_id)
            return
        handler = getattr(self, "_op_" + op, None)
        if handler is None:
            self._error(conn, "unknown_op", "unknown op %r" % op[:100], req_id)
            return
        handler(conn, req)

    def _op_hello(self, conn: Conn, req: dict) -> None:
        token = req.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(
                token.encode("utf-8"), self.token):
            self._fail(conn, "unauthorized", "wrong or missing token")
            return
        if req.get("protocol", PROTOCOL) != PROTOCOL:
            self._fail(conn, "protocol_mismatch",
                       "this executor speaks protocol %d" % PROTOCOL)
            return
        conn.authed = True
        self.send(conn, {
            "type": "hello", "protocol": PROTOCOL,
            "python": platform.python_version(), "executor": __version__,
            "pid": os.getpid(),
            "worker_pid": self.worker.pid if self.worker is not None else None,
            "busy": self.exec is not None,
        })

    def _op_ping(self, conn: Conn, req: dict) -> None:
        self.send(conn, {"type": "pong", "busy": self.exec is not None})

    def _op_exec(self, conn: Conn, req: dict) -> None:
        req_id, code = req.get("id"), req.get("code")
        timeout, limit = req.get("timeout"), req.get("output_limit")
        if self.exec is not None:
            self._error(conn, "busy", "another execution is running", req_id)
            return
        problem = None
        if not isinstance(req_id, (str, int)) or isinstance(req_id, bool):
            problem = "'id' must be a string"
        elif not isinstance(code, str):
            problem = "'code' must be a string"
        elif timeout is not None and (isinstance(timeout, bool) or not isinstance(
                timeout, (int, float)) or timeout < 0):
            problem = "'timeout' must be a number of seconds >= 0 or null"
        elif limit is not None and (isinstance(limit, bool) or not isinstance(
                limit, int) or limit < 0):
            problem = "'output_limit' must be an integer >= 0 or null"
        if problem:
            self._error(conn, "bad_request", problem, req_id)
            return
        self.exec = Exec(conn, req_id, timeout,
                         self.output_limit if limit is None else limit)
        if self.worker is None and not self._start_worker():
            self._finish("error", None, {
                "ename": "ExecutorUnavailable", "evalue":
                "the Python process that runs code could not be started",
                "traceback": []}, restarted=True)
            return
        try:
            self.worker.send_exec(code)
        except OSError:
            self._worker_lost()

    def _op_interrupt(self, conn: Conn, req: dict) -> None:
        ex = self.exec
        req_id = req.get("id")
        running = ex is not None and (req_id is None or req_id == ex.id)
        if running:
            self._interrupt("interrupted")
        self.send(conn, {"type": "ack", "op": "interrupt", "id": req_id,
                         "running": running})

    def _op_reset(self, conn: Conn, req: dict) -> None:
        if self.exec is not None:
            self._replace_worker("interrupted", "ExecutorRestarted",
                                 "the session was reset: all variables and "
                                 "imports are lost")
        else:
            self._kill_worker()
            self._start_worker()
        self.send(conn, {"type": "ack", "op": "reset"})

    def _op_put_file(self, conn: Conn, req: dict) -> None:
        self.send(conn, files.put_file(req))

    def _op_get_file(self, conn: Conn, req: dict) -> None:
        default = self.frame_limit * 3 // 4 - 64 * 1024
        self.send(conn, files.get_file(req, default))

    # -- the worker ------------------------------------------------------

    def _start_worker(self) -> bool:
        try:
            worker = WorkerProcess(self.frame_limit)
        except OSError as exc:
            log("could not start the worker: %s" % exc)
            return False
        self.worker = worker
        self.sel.register(worker.ctrl_r, selectors.EVENT_READ, ("ctrl", worker.pid))
        for name, fd in worker.pipes.items():
            self.sel.register(fd, selectors.EVENT_READ, ("pipe", (worker.pid, name)))
        return True

    def _kill_worker(self) -> WorkerProcess | None:
        """Detach the worker: drain what it wrote, SIGKILL its group, close."""
        worker = self.worker
        if worker is None:
            return None
        for name in list(worker.pipes):
            self._drain(name)
        self.worker = None
        worker.kill()
        for fd in (worker.ctrl_r, *worker.pipes.values()):
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
        worker.close_fds()
        return worker

    def _replace_worker(self, status: str, ename: str, evalue: str) -> None:
        self._kill_worker()
        self._start_worker()
        if self.exec is not None:
            self._finish(status, None, {"ename": ename, "evalue": evalue,
                                        "traceback": []}, restarted=True)

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
        self._kill_worker()
        log("the worker %s" % how)
        if self.exec is not None:
            self._finish("error", None, {
                "ename": "ExecutorDied",
                "evalue": "the Python process running the code %s, so it was "
                          "restarted: all variables and imports are lost" % how,
                "traceback": []}, restarted=True)
            self._start_worker()
        elif not young:
            self._start_worker()  # else: crash loop guard, start on next exec

    def _reap(self) -> None:
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

    def _interrupt(self, reason: str) -> None:
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
                continue  # output of background threads between executions
            # Everything the worker printed before this frame is in the pipes.
            for name in list(worker.pipes):
                self._drain(name)
            if frame.get("type") == "display":
                self.send(self.exec.conn, {"type": "display", "id": self.exec.id,
                                           "data": frame.get("data") or {}})
            elif frame.get("type") == "result":
                self._finish(frame.get("status", "error"), frame.get("value"),
                             frame.get("error"))

    def _drain(self, name: str) -> None:
        for _ in range(DRAIN_READS):
            if not self._read_pipe(name):
                return

    def _read_pipe(self, name: str) -> bool:
        """Read one chunk of worker output; False when nothing more is ready."""
        worker = self.worker
        if name not in worker.pipes:
            return False
        data = worker.read_pipe(name)
        if data is None:  # EOF: the worker (and its children) closed it
            fd = worker.pipes.pop(name)
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
        text = ex.decoders[name].decode(data, final=ex.truncated)
        if text:
            self._stream(name, text)
        if ex.truncated:
            self._stream(name, "\n[codeexec: output truncated after %d bytes]\n"
                         % ex.limit)

    def _stream(self, name: str, text: str) -> None:
        ex = self.exec
        self.send(ex.conn, {"type": "stream", "id": ex.id, "name": name, "text": text})

    def _finish(self, status: str, value, error, restarted: bool = False) -> None:
        ex = self.exec
        if not ex.truncated:
            for name, decoder in ex.decoders.items():
                text = decoder.decode(b"", final=True)
                if text:
                    self._stream(name, text)
        if ex.reason == "timeout":
            status = "timeout"
            if error is None or error.get("ename") == "KeyboardInterrupt":
                error = dict(error or {"ename": "KeyboardInterrupt", "traceback": []})
                error["evalue"] = "the execution timed out after %g s" % ex.timeout
        elif ex.reason is not None and status != "error":
            status = "interrupted"
        self.exec = None
        self.last_activity = time.monotonic()
        self.send(ex.conn, {
            "type": "result", "id": ex.id, "status": status, "value": value,
            "error": error, "duration_ms": round((time.monotonic() - ex.start) * 1000, 3),
            "truncated": ex.truncated, "restarted": restarted,
        })


def main() -> int:
    token = os.environ.get("CODEEXEC_TOKEN", "")
    if not token:
        log("CODEEXEC_TOKEN is not set")
        return 2
    return Server(token).serve()
