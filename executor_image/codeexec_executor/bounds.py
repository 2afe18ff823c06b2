"""Caps on what one execution sends back: displays, the value and the error.

The worker applies them where things are made (so a huge repr or traceback never
crosses the control pipe); the supervisor applies them again to what the worker
sends, since user code runs in the worker and may bypass its checks. The host's
copy of these rules is codeexec/_bounds.py. Output (stdout/stderr) is capped in
runner.py. Output and displays count UTF-8 bytes, the value and the error
characters, here and on the host (constants.py).
"""

from __future__ import annotations

import os

from . import constants

DISPLAY_OVERHEAD = constants.DISPLAY_OVERHEAD
ENAME_LIMIT = constants.ENAME_LIMIT
MARGIN = 256  # the supervisor's second cut leaves the worker's markers alone
HEAD_LINES = constants.TRACEBACK_HEAD_LINES
DISPLAY_MARKER = "[codeexec: display output over the limit of %d bytes per execution omitted]"


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default


LIMIT_KEYS = ("output_limit", "display_limit", "value_limit", "error_limit")
_defaults: dict = {}  # read from the environment once: it is the process's, fixed at start


def defaults() -> dict:
    """The caps an exec request does not set: CODEEXEC_*_LIMIT or the built-in ones
    (a new dict each call; the environment is read on the first)."""
    if not _defaults:
        _defaults.update(
            output_limit=_env_int("CODEEXEC_OUTPUT_LIMIT", constants.OUTPUT_LIMIT),
            display_limit=_env_int("CODEEXEC_DISPLAY_LIMIT", constants.DISPLAY_LIMIT),
            value_limit=_env_int("CODEEXEC_VALUE_LIMIT", constants.VALUE_LIMIT),
            error_limit=_env_int("CODEEXEC_ERROR_LIMIT", constants.ERROR_LIMIT),
        )
    return dict(_defaults)


def text_size(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def display_size(data) -> int:
    """A display's size as sent: strings in UTF-8 (images are base64 text)."""
    if isinstance(data, str):
        return text_size(data)
    if isinstance(data, dict):
        return sum(text_size(str(k)) + display_size(v) + 16 for k, v in data.items())
    if isinstance(data, list):
        return sum(display_size(v) + 8 for v in data)
    return 16


def clip_text(text: str, limit: int, what: str):
    """(text cut to `limit` characters plus a marker, whether it was cut)."""
    if len(text) <= limit:
        return text, False
    more = len(text) - limit
    return f"{text[:limit]}... [codeexec: {what} truncated: {more} more characters]", True


def clip_error(error, limit: int):
    """(error cut to about `limit` characters, whether it was cut).

    The message keeps its head; each traceback line is cut to a share of the rest;
    then the first lines and as many of the last as fit are kept, because the end
    of a traceback (innermost frames, the exception) is the useful part.
    """
    if not isinstance(error, dict):
        return error, False
    ename, cut_name = clip_text(str(error.get("ename") or ""), ENAME_LIMIT, "name")
    evalue = str(error.get("evalue") or "")
    raw = error.get("traceback")
    if isinstance(raw, list):
        lines = [str(line) for line in raw]
    else:
        lines = [str(raw)] if raw else []
    out = dict(error)
    if len(evalue) + sum(len(line) + 1 for line in lines) <= limit:
        out.update(ename=ename, evalue=evalue, traceback=lines)
        return out, cut_name
    evalue = clip_text(evalue, limit // 4, "message")[0]
    budget = max(limit - len(evalue), 0)
    line_cap = max(budget // 8, 100)
    lines = [clip_text(line, line_cap, "line")[0] for line in lines]
    head = []
    used = 0
    for line in lines[:HEAD_LINES]:
        if used + len(line) + 1 > budget // 4:
            break
        head.append(line)
        used += len(line) + 1
    tail = []
    for line in reversed(lines[len(head) :]):
        if used + len(line) + 1 > budget:
            break
        tail.append(line)
        used += len(line) + 1
    omitted = len(lines) - len(head) - len(tail)
    if omitted:
        head.append(f"[codeexec: {omitted} traceback lines omitted]")
    tail.reverse()
    out.update(ename=ename, evalue=evalue, traceback=head + tail)
    return out, True


class DisplayBudget:
    """Display bytes of one execution: `admit` returns the data to send, a marker
    once the cap is passed, then None for every later display."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.closed = False

    def admit(self, data):
        if self.closed:
            return None
        size = DISPLAY_OVERHEAD + display_size(data)
        if self.used + size > self.limit:
            self.closed = True
            return {"text/plain": DISPLAY_MARKER % self.limit}
        self.used += size
        return data
