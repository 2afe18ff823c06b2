"""The worker (the spec's "repl"): owns the persistent namespace and runs cells.

Started by the supervisor as `python -m codeexec_executor worker` in its own
process group. fds 1 and 2 are pipes the supervisor reads; the control pipes
(numbers in CODEEXEC_CTRL_FDS="<read>,<write>,<ack>,<park>") carry frames: `exec` in,
`display` and `result` out; the ack pipe releases a display() call once the
supervisor has forwarded the output printed before it; the park socket asks
for checkpoints (parking.py). SIGINT raises
KeyboardInterrupt only while user code runs; between cells it is ignored.
How code, values and exceptions become frames is in cells.py; how displays,
figures and values are sent, in order with the printed output, in displays.py.
"""

from __future__ import annotations

import builtins
import importlib
import io
import linecache
import os
import select
import signal
import site
import socket
import sys
import threading
import types

from . import bounds, constants, framing, notebook, parking
from .cells import compile_cell, error_info
from .displays import Displays

# Runtime-installed packages land here (pip install --target); on sys.path
# (at its end) from the first cell after it appears.
SITE_DIR = os.environ.get("CODEEXEC_SITE_DIR", constants.SITE_DIR)


class _FdWriter(io.RawIOBase):
    """Raw writer that retries partial writes, so nothing written is lost."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False

    def write(self, data) -> int:
        framing.write_all_fd(self._fd, bytes(data))
        return len(data)


def _text_stream(fd: int) -> io.TextIOWrapper:
    raw = _FdWriter(fd)  # a raw writer, as TextIOWrapper's buffer: it has no name
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", write_through=True)  # type: ignore[arg-type]


class Worker(Displays):
    def __init__(self, ctrl_in: int, ctrl_out: int, ack_in: int, park: int) -> None:
        self.ctrl_in = ctrl_in
        self.ctrl_out = ctrl_out
        self.ack_in = ack_in
        self.park = socket.socket(fileno=park)  # checkpoint requests (parking.py)
        self.main_thread = threading.current_thread()
        self.frame_limit = framing.frame_limit_from_env()
        self.send_lock = threading.Lock()
        self.running = False
        self.cell = 0
        self.limits = bounds.defaults()  # this cell's caps (the exec frame sets them)
        self.displays = bounds.DisplayBudget(self.limits["display_limit"])
        self.clipped = False  # something of this cell was cut at a cap
        self._sigint = self._on_sigint  # one bound method: prepare() compares it
        self.pid = os.getpid()  # a forked copy of this process must not serve cells
        # Such copies end themselves and send their pid here to be reaped: as
        # zombies they would hold on to the container's process-count limit.
        self.reap_r, self.reap_w = os.pipe()
        os.set_blocking(self.reap_r, False)
        os.set_blocking(self.reap_w, False)
        self.forked: set = set()
        # A real __main__ module, so pickle and multiprocessing find what
        # cells define (they look names up in sys.modules["__main__"]).
        main_module = types.ModuleType("__main__")
        main_module.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main_module
        self.namespace = main_module.__dict__
        self.namespace[notebook.SHELL_CALL] = notebook.shell
        self.history = notebook.History(self.namespace)
        self.count = 0  # the execution count: cells run with store_history
        self.inbox = notebook.Inbox(ctrl_in)
        self.allow_stdin = False  # the exec frame says whether the host answers input()
        self.input_seq = 0

    # -- signals ---------------------------------------------------------

    def _on_sigint(self, signum, frame) -> None:
        # Only user code sees KeyboardInterrupt; a late SIGINT is dropped.
        if self.running:
            raise KeyboardInterrupt

    def _install_sigint(self) -> None:
        signal.signal(signal.SIGINT, self._sigint)

    # -- cells -----------------------------------------------------------

    def serve(self) -> None:
        while True:
            timeout = 0 if self.inbox.buffered() else 0.05 if self.forked else None
            watched: list = [self.ctrl_in, self.reap_r, self.park]
            ready = select.select(watched, [], [], timeout)[0]
            if self.forked or self.reap_r in ready:
                self.reap_forked()
            if self.park in ready:
                if not parking.handle(self):
                    return
                continue  # a woken checkpoint comes back here with new fds
            if self.ctrl_in not in ready and not self.inbox.buffered():
                continue
            msg = self.inbox.next(ready=self.ctrl_in in ready, masked=False)
            if msg is None:
                return
            if msg.get("op") == "exec":
                self.set_limits(msg)
                self.allow_stdin = msg.get("allow_stdin") is True
                counts = msg.get("store_history") is not False
                saved = _set_env(msg.get("env") or {})
                try:
                    result = self.run_cell(str(msg.get("code", "")), counts)
                finally:
                    _set_env(saved)
                self.flush_streams()
                if os.getpid() != self.pid:
                    self._exit_forked_child(result)
                self.send(result)
                self.settle()

    def settle(self) -> None:
        """Between cells, after the result went out (off the round trip): finders list
        their directories again on the next import, so files written since (uploads,
        installs, commands) are found; the SIGINT handler is set again, in case the
        cell replaced it below Python (prepare() sees only Python-level changes).
        A finder the code installed may raise: that must not end the worker."""
        try:
            importlib.invalidate_caches()
        except BaseException:  # e.g. a broken finder of the code's own
            pass
        self._install_sigint()

    def _exit_forked_child(self, result: dict) -> None:
        """A process the cell forked (os.fork) got back here instead of exiting: it
        must not answer on the control pipe or read the next cell, so it ends."""
        error = result.get("error")
        if error:
            try:
                sys.stderr.write(
                    "\n".join(
                        error.get("traceback") or [f"{error.get('ename')}: {error.get('evalue')}"]
                    )
                    + "\n"
                )
            except Exception:
                pass
            self.flush_streams()
        try:
            os.write(self.reap_w, b"%d\n" % os.getpid())
        except OSError:
            pass
        os._exit(1 if error else 0)

    def reap_forked(self) -> None:
        """Reap the forked copies that ended (see _exit_forked_child)."""
        try:
            while True:
                data = os.read(self.reap_r, 65536)
                if not data:
                    break
                self.forked.update(int(pid) for pid in data.split())
        except (BlockingIOError, ValueError):
            pass
        for pid in list(self.forked):
            try:
                done = os.waitpid(pid, os.WNOHANG)[0]
            except ChildProcessError:  # a grandchild: PID 1 reaps it
                done = pid
            if done:
                self.forked.discard(pid)

    def set_limits(self, msg: dict) -> None:
        self.limits = bounds.defaults()
        for key in self.limits:
            if isinstance(msg.get(key), int):
                self.limits[key] = msg[key]
        self.displays = bounds.DisplayBudget(self.limits["display_limit"])
        self.clipped = False

    def flush_streams(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass

    def prepare(self) -> None:
        if SITE_DIR not in sys.path and os.path.isdir(SITE_DIR):
            # Appended, after the standard library and the image's packages: the
            # code can write this directory, so nothing in it may shadow them.
            site.addsitedir(SITE_DIR)
            importlib.invalidate_caches()
        # Keep interrupts working even if an earlier cell replaced the handler
        # (a look first: installing it is a system call).
        if signal.getsignal(signal.SIGINT) is not self._sigint:
            self._install_sigint()

    def run_cell(self, code: str, store_history: bool = True) -> dict:
        self.cell += 1
        self.count += 1 if store_history else 0
        filename = f"<cell-{self.cell}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        result: dict = {"type": "result", "status": "ok", "value": None, "error": None}
        result["execution_count"] = self.count
        try:
            self.prepare()
            try:
                body, last = compile_cell(notebook.transform(code), filename)
            except (SyntaxError, ValueError, OverflowError, notebook.UsageError) as exc:
                result["status"] = "error"
                result["error"] = error_info(exc, only=True)
                return result
            value = None
            try:
                self.running = True
                exec(body, self.namespace)
                if last is not None:
                    value = eval(last, self.namespace)
                if value is not None:
                    if store_history:
                        self.history.push(value)
                    self.show_value(value, result)  # reprs can hang too
            finally:
                self.running = False
        except KeyboardInterrupt as exc:
            result["status"] = "interrupted"
            result["error"] = error_info(exc)
        except BaseException as exc:  # SystemExit too: the namespace survives
            result["status"] = "error"
            result["error"] = error_info(exc)
        finally:
            self.running = False
            self.flush_figures()
            if result["error"] is not None:
                result["error"], cut = bounds.clip_error(
                    result["error"], self.limits["error_limit"]
                )
                self.clipped = self.clipped or cut
            result["truncated"] = self.clipped
        return result


def main() -> int:
    fds = os.environ.pop("CODEEXEC_CTRL_FDS", "")
    try:
        ctrl_in, ctrl_out, ack_in, park = (int(x) for x in fds.split(","))
    except ValueError:
        sys.stderr.write("codeexec worker: CODEEXEC_CTRL_FDS is not set\n")
        return 2
    # Children the user starts must not inherit (and hold open) the control pipes.
    os.set_inheritable(ctrl_in, False)
    os.set_inheritable(ctrl_out, False)
    os.set_inheritable(ack_in, False)
    os.set_inheritable(park, False)
    os.set_blocking(ack_in, False)
    worker = Worker(ctrl_in, ctrl_out, ack_in, park)
    worker._install_sigint()
    sys.stdout = sys.__stdout__ = _text_stream(1)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = _text_stream(2)  # type: ignore[misc]
    builtins.display = worker.display  # type: ignore[attr-defined]
    builtins.update_display = worker.update_display  # type: ignore[attr-defined]
    builtins.clear_output = worker.clear_output  # type: ignore[attr-defined]

    def input(prompt=""):  # the builtin, answered by the host (notebook.ask)
        return notebook.ask(worker, prompt)

    builtins.input = input
    # The code's own modules in the working directory import as they did under
    # `python -m`, but after the standard library and the image's packages: the
    # worker runs by path so that nothing there can replace the executor.
    try:
        sys.path.append(os.getcwd())
    except OSError:
        pass
    try:
        worker.serve()
    except BrokenPipeError:
        pass
    return 0


def _set_env(env: dict) -> dict:
    """Set ``env`` in os.environ (None: unset); returns what it replaced, to undo it."""
    saved = {name: os.environ.get(name) for name in env}
    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return saved
