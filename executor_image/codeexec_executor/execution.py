"""One execution in the supervisor: where its result goes, its deadlines, its output
budget and decoders, its rollback copy (runner.py drives it)."""

from __future__ import annotations

import codecs
import sys
import time
from typing import TYPE_CHECKING

from . import bounds

if TYPE_CHECKING:
    from .checkpoints import Parked


_UTF8 = codecs.getincrementaldecoder("utf-8")


def log(message: str) -> None:
    sys.stderr.write(f"codeexec: {message}\n")
    sys.stderr.flush()


class Exec:
    def __init__(self, conn, req_id, timeout, limits: dict):
        self.conn = conn
        self.id = req_id
        self.start = time.monotonic()
        self.timeout = timeout
        self.deadline = None if timeout is None else self.start + timeout
        self.limits = limits
        self.limit = limits["output_limit"]
        self.used = 0
        self.truncated = False  # output reached its cap: the rest is discarded
        self.clipped = False  # a display, the value or the error was cut
        self.displays = bounds.DisplayBudget(limits["display_limit"])
        self.reason: str | None = None  # "timeout" | "interrupted" | "disconnected"
        self.kill_at: float | None = None
        self.rollback: Parked | None = None  # a parked copy to go back to if the code fails
        self.rolled_back = False
        self.count = None  # the worker's execution count, from its result
        self.input_seq = None  # the input_request waiting for the client's reply
        self.decoders: dict = {}  # per stream, made when its first output comes

    def decoder(self, name: str):
        """The incremental UTF-8 decoder of one stream (a cell that prints nothing
        makes none)."""
        decoder = self.decoders.get(name)
        if decoder is None:
            decoder = self.decoders[name] = _UTF8(errors="replace")
        return decoder
