"""The host's own caps on what one execution brings back (``ResultLimits``).

The executor cuts output, displays, the value and the traceback at these caps before
anything crosses the wire. The client applies them again to every frame as it
arrives (``Budget``), so an executor that is broken or hostile cannot grow the host
past them: the frame limit bounds one frame, these caps bound what is kept. Output and
displays count UTF-8 bytes, the value and the traceback characters, on both sides
(``ResultLimits``; docs/architecture.md). Build progress lines are kept bounded too
(``LineLog``). The executor's copy of these rules is
``executor_image/codeexec_executor/bounds.py``.
"""

from __future__ import annotations

import codecs
from collections import deque
from dataclasses import replace
from typing import Any

from . import protocol
from ._shared import constants
from .models import Display, ExecResult, ResultLimits, StreamEvent

# What the MCP server keeps per call: all of it goes into a model's context.
MCP_LIMITS = ResultLimits(output=100_000, displays=8 * 2**20, value=100_000, error=100_000)
DISPLAY_OVERHEAD = constants.DISPLAY_OVERHEAD  # many tiny displays count
MARGIN = 4096  # room for the executor's own markers: what it cut is not cut again
ENAME_LIMIT = constants.ENAME_LIMIT
_HEAD_LINES = constants.TRACEBACK_HEAD_LINES


def text_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8: never less than what Python keeps per character."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def wire_size(data: Any) -> int:
    """The size of a display's data as sent (strings in UTF-8, base64 for images)."""
    if isinstance(data, str):
        return text_size(data)
    if isinstance(data, dict):
        return sum(text_size(str(k)) + wire_size(v) + 16 for k, v in data.items())
    if isinstance(data, list):
        return sum(wire_size(v) + 8 for v in data)
    return 16


def cut_bytes(text: str, limit: int) -> str:
    """The longest head of ``text`` whose UTF-8 is at most ``limit`` bytes."""
    data = text[:limit].encode("utf-8", "surrogatepass")[:limit]  # a char is >= 1 byte
    # Not final: a character cut in the middle is held back, not replaced.
    return codecs.getincrementaldecoder("utf-8")("surrogatepass").decode(data)


def clip_text(text: str, limit: int, what: str) -> tuple[str, bool]:
    """``text`` cut to its first ``limit`` characters plus a marker; whether it was cut."""
    if len(text) <= limit:
        return text, False
    more = len(text) - limit
    return f"{text[:limit]}... [codeexec: {what} truncated: {more} more characters]", True


def clip_error(error: dict[str, Any], limit: int) -> tuple[dict[str, Any], bool]:
    """An error (``ename``, ``evalue``, ``traceback``) cut to about ``limit`` characters.

    The message keeps its head; every traceback line is cut to a share of the rest,
    then the first lines and as many of the last ones as fit are kept: the end of a
    traceback (the innermost frames and the exception) is the part worth reading.
    """
    ename, cut_name = clip_text(str(error.get("ename") or ""), ENAME_LIMIT, "name")
    evalue = str(error.get("evalue") or "")
    raw = error.get("traceback")
    lines = [str(line) for line in raw] if isinstance(raw, list) else [str(raw)] if raw else []
    if len(evalue) + sum(len(line) + 1 for line in lines) <= limit:
        return {"ename": ename, "evalue": evalue, "traceback": lines}, cut_name
    evalue = clip_text(evalue, limit // 4, "message")[0]
    budget = max(limit - len(evalue), 0)
    line_cap = max(budget // 8, 100)
    lines = [clip_text(line, line_cap, "line")[0] for line in lines]
    head: list[str] = []
    used = 0
    for line in lines[:_HEAD_LINES]:
        if used + len(line) + 1 > budget // 4:
            break
        head.append(line)
        used += len(line) + 1
    tail: list[str] = []
    for line in reversed(lines[len(head) :]):
        if used + len(line) + 1 > budget:
            break
        tail.append(line)
        used += len(line) + 1
    omitted = len(lines) - len(head) - len(tail)
    if omitted:
        head.append(f"[codeexec: {omitted} traceback lines omitted]")
    return {"ename": ename, "evalue": evalue, "traceback": head + tail[::-1]}, True


class Budget:
    """What one execution has kept so far: every frame it sends passes through ``take``."""

    def __init__(self, limits: ResultLimits) -> None:
        self.limits = limits
        self.truncated = False
        self._output = 0
        self._displays = 0
        self._displays_closed = False

    def take(self, frame: protocol.Frame) -> protocol.Event | None:
        """The frame's event cut to the caps, or None when nothing of it is kept.

        Raises:
            ProtocolError: the frame is malformed.
        """
        kind = frame.get("type")
        if kind == "display":
            return self._display(frame)
        if kind == "result":
            return self._result(frame)
        event = protocol.parse_event(frame)
        if isinstance(event, StreamEvent):
            return self._stream(event)
        return event

    def _stream(self, event: StreamEvent) -> StreamEvent | None:
        cap = self.limits.output + MARGIN
        room = cap - self._output
        if room <= 0:
            self.truncated = True
            return None
        text = event.text
        size = text_size(text)
        if size > room:
            text = cut_bytes(text, room)
            text += f"\n[codeexec: output truncated by the client after {cap} bytes]\n"
            self.truncated = True
            size = room  # the cap is reached: nothing more is kept
        self._output += size
        return StreamEvent(name=event.name, text=text)

    def _display(self, frame: protocol.Frame) -> Display | None:
        if self._displays_closed:
            return None
        size = DISPLAY_OVERHEAD + wire_size(frame.get("data"))
        if self._displays + size > self.limits.displays + MARGIN:
            self._displays_closed = self.truncated = True
            return Display(
                {
                    "text/plain": "[codeexec: display output over the limit of "
                    f"{self.limits.displays} bytes per execution omitted by the client]"
                }
            )
        self._displays += size
        event = protocol.parse_event(frame)
        assert isinstance(event, Display)
        return event

    def _result(self, frame: protocol.Frame) -> protocol.Event | None:
        frame = dict(frame)
        cut_value = cut_error = False
        if frame.get("value") is not None:
            frame["value"], cut_value = clip_text(
                str(frame["value"]), self.limits.value + MARGIN, "value"
            )
        if isinstance(frame.get("error"), dict):
            frame["error"], cut_error = clip_error(frame["error"], self.limits.error + MARGIN)
        result = protocol.parse_event(frame)
        if result is None or not (self.truncated or cut_value or cut_error):
            return result
        assert isinstance(result, ExecResult)
        return replace(result, truncated=True)


class LineLog:
    """The last ``keep`` progress lines, each cut to ``width`` characters.

    Builds may print without end; whoever keeps or forwards their lines keeps these.
    ``count`` is how many lines arrived in all.
    """

    def __init__(self, keep: int = 200, width: int = 1000) -> None:
        self.width = width
        self.count = 0
        self._lines: deque[str] = deque(maxlen=keep)

    def add(self, line: str) -> str:
        """Keep ``line`` (cut); return what was kept."""
        kept = clip_text(line, self.width, "line")[0]
        self._lines.append(kept)
        self.count += 1
        return kept

    @property
    def last(self) -> str | None:
        return self._lines[-1] if self._lines else None

    def tail(self, n: int | None = None) -> list[str]:
        lines = list(self._lines)
        return lines if n is None else lines[-n:]

    def __len__(self) -> int:
        return len(self._lines)
