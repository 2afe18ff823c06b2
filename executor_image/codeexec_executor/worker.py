"""The worker (the spec's "repl"): owns the persistent namespace and runs cells.

Started by the supervisor as `python -m codeexec_executor worker` in its own
process group. fds 1 and 2 are pipes the supervisor reads; the control pipes
(numbers in CODEEXEC_CTRL_FDS="<read>,<write>,<ack>,<park>") carry frames: `exec` in,
`display` and `result` out; the ack pipe releases a display() call once the
supervisor has forwarded the output printed before it; the park socket asks
for checkpoints (parking.py). SIGINT raises
KeyboardInterrupt only while user code runs; between cells it is ignored.
How code, values and exceptions become frames is in cells.py.
"""

from __future__ import annotations

import base64
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
from .cells import compile_cell, error_info, mime_bundle, safe_repr

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


class Worker:
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

    # -- frames ----------------------------------------------------------

    def send(self, obj: dict) -> None:
        data = framing.encode(obj)
        with self.send_lock:
            framing.write_all_fd(self.ctrl_out, data)

    def display(self, *objs, display_id=None):
        """Show rich representations of objects (like IPython's display()); with
        display_id (a string, or True for a new one) return a DisplayHandle."""
        if display_id is True:
            display_id = notebook.new_display_id()
        display_id = None if display_id is None or display_id is False else str(display_id)
        for obj in objs:
            self.send_display(mime_bundle(obj), self._sync(), display_id)
        return None if display_id is None else notebook.DisplayHandle(self, display_id)

    def update_display(self, obj, *, display_id) -> None:
        """Replace what the display with this id shows (IPython's update_display)."""
        self.send_display(mime_bundle(obj), self._sync(), str(display_id), update=True)

    def clear_output(self, wait: bool = False) -> None:
        """Clear the cell's output so far (with wait: once the next output comes)."""
        self.flush_streams()
        self.send_ordered({"type": "clear_output", "wait": bool(wait)}, self._sync())

    def _sync(self) -> bool:
        # In the cell's own thread, wait until the supervisor has forwarded
        # what was printed before, so the display keeps its place in the output.
        return self.running and threading.current_thread() is self.main_thread

    def send_display(self, data: dict, sync: bool = False, display_id=None, update=False) -> None:
        admitted = self.displays.admit(data)
        if admitted is not data:
            self.clipped = True
            if admitted is None:
                return  # past the display cap: nothing more is sent
        frame = {"type": "display", "data": admitted}
        if display_id is not None:
            frame["display_id"] = display_id[:200]
            frame["update"] = update
        size = len(framing.encode_body(frame))
        if size > self.frame_limit - 4096:
            frame["data"] = {
                "text/plain": f"[codeexec: display output of {size} bytes omitted: "
                "larger than the frame limit]"
            }
        self.send_ordered(frame, sync)

    def send_ordered(self, frame: dict, sync: bool) -> None:
        if sync:
            self._drain_acks()
            frame["sync"] = True
        self.send(frame)
        if sync:
            while not select.select([self.ack_in], [], [])[0] or not self._drain_acks():
                pass

    def _drain_acks(self) -> bool:
        """Read pending ack bytes (stale ones from an interrupted display too)."""
        got = False
        while True:
            try:
                data = os.read(self.ack_in, 64)
            except BlockingIOError:
                return got
            if not data:
                raise BrokenPipeError("the supervisor is gone")
            got = True

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

    def show_value(self, value, result: dict) -> None:
        bundle = mime_bundle(value)
        if len(bundle) > 1:
            self.send_display(bundle)
        text, cut = bounds.clip_text(bundle["text/plain"], self.limits["value_limit"], "value")
        self.clipped = self.clipped or cut
        result["value"] = text

    def flush_figures(self) -> None:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        try:
            for num in plt.get_fignums():
                fig = plt.figure(num)
                buf = io.BytesIO()
                fig.savefig(buf, format="png")
                self.send_display(
                    {
                        "image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                        "text/plain": safe_repr(fig),
                    }
                )
        except Exception as exc:
            sys.stderr.write(f"[codeexec: could not render figures: {exc!r}]\n")
        finally:
            try:
                plt.close("all")
            except Exception:
                pass


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
