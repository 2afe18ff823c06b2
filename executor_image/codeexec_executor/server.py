"""The supervisor: owns the TCP socket, the connections, timeouts and the
watchdog (docs/protocol.md). What each request does (the handshake among them)
is in ops.py; the worker, the running execution and its output in runner.py.

One single-threaded selectors loop over non-blocking sockets and pipes, so a
half-sent frame or a client that does not read never blocks anyone else.

In a container it is PID 1 (no --init): the kernel drops SIGKILL and SIGSTOP
sent to PID 1 from inside its pid namespace, so the session's code, which runs
as the same user, cannot stop it. It makes itself non-dumpable before anything
else, which makes its /proc/1/environ (the session token) and /proc/1/mem
unreadable to that user. A watchdog thread enforces the idle timeout and the
maximum lifetime even if the loop is wedged; exiting PID 1 ends the container.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import threading
import time

from . import bounds, constants, framing
from .branches import Branches
from .checkpoints import become_subreaper
from .commands import Commands
from .execution import log
from .ops import Ops
from .pause import Pausing
from .runner import Runner

RECV_SIZE = 256 * 1024
SEND_BUFFER_LIMIT = 64 * 1024 * 1024
LINGER = 2.0  # seconds to drain a client's unread bytes before closing
HELLO_FRAME_LIMIT = constants.HELLO_FRAME_LIMIT  # buffered at most before the handshake
WATCH_PERIOD = 0.5  # seconds between the watchdog's looks
WATCH_SLACK = 1.0  # the loop's own idle exit goes first; the watchdog backs it up
HEARTBEAT = 1.0  # while code runs the loop wakes at least this often...
STALE_LOOP = 15.0  # ...so a loop silent this long is wedged, and "busy" is void
PR_SET_DUMPABLE, PR_GET_DUMPABLE = 4, 3
# As PID 1 the supervisor reaps every orphan. In batches, at most this often: a fork
# bomb at the pids limit then dies out (its copies all fail to fork before the slots
# of the dead ones come free), where reaping each at once would refill the slots.
REAP_INTERVAL = 0.25


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class Conn:
    def __init__(self, sock: socket.socket, frame_limit: int, hello_deadline: float):
        self.sock = sock
        self.decoder = framing.FrameDecoder(min(frame_limit, HELLO_FRAME_LIMIT))
        self.out = bytearray()
        self.authed = False
        self.branch = ""  # which fork this connection talks to ("": the session itself)
        self.nonces: bytes | None = None  # client + server nonce, from challenge to auth
        self.hello_deadline = hello_deadline
        self.closing = False  # answer sent; close once flushed
        self.close_at: float | None = None  # when closing: close by then anyway
        self.shut = False  # our side half-closed; discarding what arrives
        self.closed = False
        self.events = selectors.EVENT_READ  # what the selector waits for on it


class Server(Pausing, Ops):
    """The loop, the connections and the timers; what each request does is in ops.py."""

    def __init__(self, token: str) -> None:
        self.token = token.encode("utf-8")
        self.host = os.environ.get("CODEEXEC_HOST", "0.0.0.0")
        self.port = int(os.environ.get("CODEEXEC_PORT", constants.EXECUTOR_PORT))
        self.idle_timeout = _env_float("CODEEXEC_IDLE_TIMEOUT", 0.0)
        self.max_lifetime = _env_float("CODEEXEC_MAX_LIFETIME", 0.0)
        self.hello_timeout = _env_float("CODEEXEC_HELLO_TIMEOUT", constants.HELLO_TIMEOUT)
        self.frame_limit = framing.frame_limit_from_env()
        self.sel = selectors.DefaultSelector()
        self.conns: set[Conn] = set()
        grace = _env_float("CODEEXEC_INTERRUPT_GRACE", constants.INTERRUPT_GRACE)
        self.runner = Branches(  # the session's runner, and its forks' (branches.py)
            lambda: Runner(self.sel, self.send, self.frame_limit, bounds.defaults(), grace)
        )
        self.commands = Commands(self.sel, self.send, bounds.defaults()["output_limit"])
        self.runner.on_reaped = self.commands.reaped
        self.stopping = False
        self.last_activity = self.started = self.heartbeat = time.monotonic()
        self.reap_due = True  # a signal (SIGCHLD?) arrived: reap children
        self.next_reap = 0.0
        # One receive buffer for every connection: a fresh recv(RECV_SIZE) would
        # allocate (mmap) and free a large buffer on every read.
        self.recv_buf = bytearray(RECV_SIZE)
        self.recv_view = memoryview(self.recv_buf)

    # -- lifecycle -------------------------------------------------------

    def serve(self) -> int:
        listener = self._listen()
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self.sel.register(wake_r, selectors.EVENT_READ, ("wake", wake_r))
        signal.set_wakeup_fd(wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop to reap
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_stop_signal)
        sys.stderr.write(f"CODEEXEC_LISTENING {listener.getsockname()[1]}\n")
        sys.stderr.flush()
        self.runner.start_worker()
        if self.idle_timeout > 0 or self.max_lifetime > 0:
            threading.Thread(target=self._watchdog, name="watchdog", daemon=True).start()
        try:
            while not self.stopping:
                self.heartbeat = time.monotonic()
                if self.reap_due and self.heartbeat >= self.next_reap:
                    # Only after a signal woke the loop (SIGCHLD among them): a
                    # waitpid on every iteration would find nothing.
                    self.reap_due = False
                    self.next_reap = self.heartbeat + REAP_INTERVAL
                    self.runner.reap()
                self._relisten_if_due(self.heartbeat)
                if self._tick():
                    break
                for key, mask in self.sel.select(self._next_timeout()):
                    self._on_event(key.data, mask)
        finally:
            self.commands.kill_all()
            if self.runner.worker is not None:
                self.runner.worker.kill()
            self.runner.checkpoints.close()
            self.runner.reap()
        return 0

    def _last_activity(self) -> float:
        return max(self.last_activity, self.runner.last_done, self.commands.last_done)

    def _busy(self) -> bool:
        """Code or a command runs: the idle timeout waits."""
        return self.runner.exec is not None or bool(self.commands.running)

    def _watchdog(self) -> None:
        """Exit the process when a limit is reached, whatever the loop is doing."""
        while True:
            time.sleep(WATCH_PERIOD)
            now = time.monotonic()
            reason = None
            if self.max_lifetime > 0 and now - self.started >= self.max_lifetime:
                reason = f"alive for {self.max_lifetime:g} s, the maximum lifetime"
            elif self.idle_timeout > 0:
                # Code that runs keeps the session alive only while the loop that
                # watches it still turns: a wedged loop's "busy" counts for nothing.
                busy = self._busy() and now - self.heartbeat < STALE_LOOP
                idle = now - self._last_activity()
                if not busy and idle >= self.idle_timeout + WATCH_SLACK:
                    reason = f"idle for {self.idle_timeout:g} s (watchdog)"
            if reason is not None:
                log(f"{reason}, exiting")
                worker = self.runner.worker
                if worker is not None:
                    worker.kill()
                os._exit(0)

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
        elif kind in ("pipe", "ctrl"):
            self.runner.on_event(kind, obj)
        elif kind == "cmd":
            self.commands.on_event(obj)
        elif kind == "listen":
            self._accept(obj)
        elif kind == "wake":
            self.reap_due = True
            self.commands.poll()
            try:
                while obj.recv(4096):
                    pass
            except OSError:
                pass

    def _next_timeout(self) -> float | None:
        now = time.monotonic()
        deadlines = [c.hello_deadline for c in self.conns if not c.authed and not c.closing]
        deadlines += [c.close_at for c in self.conns if c.close_at is not None]
        deadlines += self.runner.deadlines() + self.commands.deadlines()
        if self.reap_due:
            deadlines.append(self.next_reap)
        if self.relisten_at is not None:
            deadlines.append(self.relisten_at)
        if not self._busy() and self.idle_timeout > 0:
            deadlines.append(self._last_activity() + self.idle_timeout)
        elif self._busy():
            deadlines.append(now + HEARTBEAT)  # keeps the watchdog's heartbeat fresh
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
                self._fail(
                    conn, "unauthorized", f"no completed handshake within {self.hello_timeout:g} s"
                )
        self.runner.tick(now)
        self.commands.tick(now)
        if (
            not self._busy()
            and self.idle_timeout > 0
            and now - self._last_activity() >= self.idle_timeout
        ):
            log(f"idle for {self.idle_timeout:g} s, exiting")
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
                log(f"accept failed: {exc}")
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(sock, self.frame_limit, time.monotonic() + self.hello_timeout)
            self.conns.add(conn)
            self.sel.register(sock, selectors.EVENT_READ, ("conn", conn))

    def _on_readable(self, conn: Conn) -> None:
        try:
            size = conn.sock.recv_into(self.recv_buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            size = 0
        if not size:
            self._close(conn)
            return
        if conn.closing:
            return  # already answered with an error: discard the rest
        conn.decoder.feed(self.recv_view[:size])
        while not conn.closed and not conn.closing:
            try:
                frame = conn.decoder.next_frame()
            except framing.FrameError as exc:
                self._fail(conn, exc.code, str(exc))
                return
            if frame is None:
                return
            # Only an authenticated request other than hello is activity: neither a
            # stranger's bytes, nor the handshake, nor `codeexec ls` looking in keep a
            # container alive.
            if conn.authed and frame.get("op") not in ("hello", "auth"):
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
        if conn.events != events:
            self.sel.modify(conn.sock, events, ("conn", conn))
            conn.events = events

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
        self.runner.detach(conn)
        self.commands.detach(conn)


def make_undumpable() -> str | None:
    """prctl(PR_SET_DUMPABLE, 0); None when done, else why it failed."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            return os.strerror(ctypes.get_errno())
        if libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
            return "the process is still dumpable"
    except (ImportError, OSError, AttributeError) as exc:
        return f"ctypes or prctl is unavailable ({exc})"
    return None


def main() -> int:
    # First of all: while the process is dumpable, the session's user can read
    # the token from /proc/<pid>/environ. On Linux (every container) a supervisor
    # that cannot hide it refuses to serve; elsewhere (a developer running the
    # executor locally) there is no /proc to protect, so it only says so.
    problem = make_undumpable() if sys.platform.startswith("linux") else "not Linux"
    if problem is not None:
        if sys.platform.startswith("linux"):
            log(
                f"cannot make the supervisor non-dumpable: {problem}; the session's code "
                "could read the token, so the executor does not start"
            )
            return 2
        log(f"the supervisor stays dumpable ({problem})")
    token = os.environ.get("CODEEXEC_TOKEN", "")
    if not token:
        log("CODEEXEC_TOKEN is not set")
        return 2
    become_subreaper()  # parked checkpoints are orphans: ours to reap
    return Server(token).serve()
