"""One call in a daemon thread, its result as a ``Future``.

For work that overlaps other work (``_start.py``: the image lookup and a warm-pool
claim beside each other) or that must not hold up the exit (``engines.py``: an
engine that hangs). A daemon thread: the process may end while it still runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

_T = TypeVar("_T")


def in_background(fn: Callable[[], _T], name: str) -> Future[_T]:
    """``fn()`` in a daemon thread called ``name``; the future holds its result or error."""
    future: Future[_T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
