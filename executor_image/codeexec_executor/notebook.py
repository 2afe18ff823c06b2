"""Notebook habits in a cell: `!command` lines, `%magic` lines, `_` for the last
value, `input()` answered by the host, and display ids (docs/outputs.md).

`transform()` turns a cell's `!` lines into calls of `shell()` before it is
compiled; a `%` line is refused with a message naming what works (the host runs
`%pip install` lines itself, through its install path, before the cell gets here).
The worker owns the rest: it calls `History.push()` with each cell's value and
answers `input()` through `Inbox`.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import uuid

from . import framing
from .linescan import scan_line

SHELL_CALL = "__codeexec_shell__"
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*!(.*)$")
SUPPORTED = (
    "codeexec understands `!command` lines (a shell command), `name = !command` (its "
    "output lines as a list) and `%pip install NAME...` at the top level of a cell"
)


class UsageError(Exception):
    """A `%magic` the session does not support."""

    # Shown as IPython shows it, `UsageError: ...`, not under the executor's module.
    __module__ = "builtins"


def special_lines(code: str):
    """Yield (index, line) of each physical line that starts a statement with `!`
    (not `!=`) or `%`: outside strings, brackets and backslash continuations."""
    state: list = [None, 0, False]
    for index, line in enumerate(code.splitlines(True)):
        starts = state[0] is None and state[1] == 0 and not state[2]
        stripped = line.lstrip()
        if starts and (stripped.startswith("%") or _is_shell(stripped)):
            yield index, line
            continue
        scan_line(line, state)


def _is_shell(stripped: str) -> bool:
    if stripped.startswith("!") and not stripped.startswith("!="):
        return True
    match = _ASSIGN.match(stripped)
    return match is not None and not match.group(2).startswith("=")


_MAYBE_SPECIAL = re.compile(r"^[ \t]*[!%]|=[ \t]*!", re.M)


def transform(code: str) -> str:
    """The cell with `!` lines as calls; raises UsageError on a `%` line."""
    if not _MAYBE_SPECIAL.search(code):
        return code  # the common case: no line to look at closely
    lines = code.splitlines(True)
    for index, line in special_lines(code):
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        end = "\n" if line.endswith("\n") else ""
        if stripped.startswith("%"):
            raise UsageError(f"line {index + 1}: {_magic_problem(stripped.strip())}")
        match = _ASSIGN.match(stripped.rstrip("\r\n"))
        if match and not stripped.startswith("!"):
            call = f"{match.group(1)} = {SHELL_CALL}({match.group(2).strip()!r}, capture=True)"
        else:
            call = f"{SHELL_CALL}({stripped[1:].strip()!r})"
        lines[index] = indent + call + end
    return "".join(lines)


def _magic_problem(line: str) -> str:
    name = line.lstrip("%").split(None, 1)[0] if line.lstrip("%") else ""
    if line.startswith("%pip") and not line.startswith("%%"):
        return (
            f"{line[:60]!r} is not supported here: {SUPPORTED}; a %pip line inside a block "
            "or any other pip command is not (call `!pip ...` for those)"
        )
    return f"%{name or line[:20]} is not supported: {SUPPORTED}"


def shell(command: str, capture: bool = False):
    """Run `command` with /bin/sh; its output goes to the cell's stdout and stderr
    (or, with capture, comes back as a list of lines). The exit status is left in
    `_exit_code` of the cell's namespace; a failing command does not raise."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # what the cell printed before comes first
        except Exception:
            pass
    proc = subprocess.run(
        ["/bin/sh", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None,
        stderr=None,
    )
    main = sys.modules.get("__main__")
    if main is not None:
        main.__dict__["_exit_code"] = proc.returncode
    if capture:
        return proc.stdout.decode("utf-8", "replace").splitlines()
    return None


class History:
    """`_`, `__` and `___`: the last three values, as in IPython. A name the code
    rebound itself is left alone (all three then stay as the code set them)."""

    NAMES = ("_", "__", "___")

    def __init__(self, namespace: dict) -> None:
        self.namespace = namespace
        self.values = [None, None, None]

    def push(self, value) -> None:
        ns = self.namespace
        if any(name in ns and ns[name] is not old for name, old in zip(self.NAMES, self.values)):
            return
        self.values = [value] + self.values[:2]
        ns.update(zip(self.NAMES, self.values))


_SIGINT = {signal.SIGINT}


class Inbox:
    """Frames from the supervisor on the worker's control pipe, read so that an
    interrupt never loses part of one: SIGINT is held while bytes are moved from
    the pipe into the decoder, and only the wait for them can be interrupted."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.decoder = framing.FrameDecoder(limit=1 << 31)
        # Read into one buffer: a fresh os.read(fd, n) would allocate (and, when
        # large, mmap) n bytes for every read.
        self.buf = bytearray(256 * 1024)

    def next(self, ready: bool = False, masked: bool = True):
        """The next frame (blocking); None at EOF. ``ready``: a select just said the
        pipe has bytes, so the first read needs no wait. ``masked=False``: SIGINT
        cannot raise here (between cells its handler never does), so the two
        system calls that hold it are left out."""
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return frame
            if not ready:
                select.select([self.fd], [], [])
            ready = False
            old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGINT) if masked else None
            try:
                try:
                    size = os.readv(self.fd, [self.buf])
                except BlockingIOError:
                    continue
                if not size:
                    return None
                self.decoder.feed(memoryview(self.buf)[:size])
            finally:
                if old is not None:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def buffered(self) -> bool:
        return self.decoder.pending() > 0


NO_HANDLER = (
    "input() needs an answer from the caller, and this execution has no input handler: "
    "pass on_input=<function> to ContainerSession.execute() (codeexec exec answers from "
    "its terminal); otherwise put the value in the code"
)
NOT_MAIN = "input() is answered only in the cell's own thread, not in other threads"


def ask(worker, prompt="") -> str:
    """input(), answered by the host's handler (Jupyter's input_request). Only the
    cell's own thread may ask: it alone reads the control pipe then."""
    if not worker.allow_stdin or not worker._sync():
        raise EOFError(NOT_MAIN if worker.allow_stdin else NO_HANDLER)
    worker.flush_streams()
    worker.input_seq += 1
    frame = {"type": "input_request", "prompt": str(prompt), "seq": worker.input_seq}
    worker.send_ordered(frame, True)
    while True:
        msg = worker.inbox.next()
        if msg is None:
            raise EOFError("the supervisor is gone")
        if msg.get("op") == "input_reply" and msg.get("seq") == worker.input_seq:
            break  # earlier, interrupted requests' replies are dropped
    value = msg.get("value")
    if not isinstance(value, str):
        raise EOFError("the caller's input handler gave no answer (it returned None)")
    return value


def new_display_id() -> str:
    return uuid.uuid4().hex


class DisplayHandle:
    """What `display(obj, display_id=...)` returns (IPython's DisplayHandle)."""

    def __init__(self, worker, display_id: str) -> None:
        self._worker = worker
        self.display_id = display_id

    def __repr__(self) -> str:
        return f"<DisplayHandle display_id={self.display_id}>"

    def display(self, obj) -> None:
        self._worker.display(obj, display_id=self.display_id)

    def update(self, obj) -> None:
        self._worker.update_display(obj, display_id=self.display_id)


# -- the supervisor's side ---------------------------------------------------------

INPUT_LIMIT = 1 << 20  # characters of one answer to input()
PROMPT_LIMIT = 64 * 1024  # characters of a prompt passed on to the client


def display_frame(exec_id, data: dict, frame: dict) -> dict:
    """The display frame for the client, with the worker's display id if any."""
    out = {"type": "display", "id": exec_id, "data": data}
    if isinstance(frame.get("display_id"), str):
        out["display_id"] = frame["display_id"][:200]
        out["update"] = frame.get("update") is True
    return out


def forward(ex, frame: dict):
    """A worker's clear_output or input_request frame, as the client gets it; None
    when it is not sent. Each clear counts against the display cap like an empty
    display: a loop of clear_output() cannot flood the client."""
    if frame.get("type") == "clear_output":
        empty: dict = {}
        if ex.displays.admit(empty) is not empty:
            ex.clipped = True
            return None
        return {"type": "clear_output", "id": ex.id, "wait": frame.get("wait") is True}
    seq = frame.get("seq") if isinstance(frame.get("seq"), int) else 0
    ex.input_seq = seq
    prompt = str(frame.get("prompt") or "")[:PROMPT_LIMIT]
    return {"type": "input_request", "id": ex.id, "seq": seq, "prompt": prompt}


def reply_input(ex, worker, conn, req: dict):
    """Pass the client's answer to input() on to the worker; else say why not.
    An answer that comes too late (the execution ended or was interrupted while
    the caller thought) is dropped without a word: that race is normal."""
    value = req.get("value")
    if value is not None and (not isinstance(value, str) or len(value) > INPUT_LIMIT):
        return f"'value' must be a string of at most {INPUT_LIMIT} characters, or null"
    if ex is None or ex.conn is not conn or req.get("id") != ex.id:
        return None
    if ex.input_seq is None or req.get("seq") != ex.input_seq or worker is None:
        return None
    ex.input_seq = None
    try:
        reply = {"op": "input_reply", "seq": req["seq"], "value": value}
        framing.write_frame_fd(worker.ctrl_w, reply)
    except OSError:
        pass  # the worker is gone: its death is noticed on the control pipe
    return None
