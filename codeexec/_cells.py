"""A cell as a notebook user writes it: its ``%pip install`` lines, and its events
gathered into one ``ExecResult`` (docs/outputs.md).

``split`` cuts a cell at its top-level ``%pip install`` lines, which the session runs
through its install path (the same validation and index settings as
``ContainerSession.install``); every other line, ``!command`` lines among them, goes
to the executor, which refuses any other ``%magic`` by name. ``collect`` folds a
stream of events into a result the way a notebook shows it: ``clear_output`` drops
what came before, ``update_display`` replaces the display with the same id.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Callable, Generator, Iterable
from contextlib import closing
from dataclasses import replace
from typing import Any, Literal

from . import protocol
from ._events import ClearOutput
from ._shared import linescan
from .errors import InvalidDependency
from .models import Display, ExecResult, StreamEvent

Segment = tuple[Literal["python"], str] | tuple[Literal["pip"], tuple[str, ...]]
_QUIET = ("-q", "--quiet")  # pip's own flag, common in notebooks: runs are quiet anyway


def split(code: str) -> list[Segment]:
    """The cell as Python parts and ``%pip install`` parts, in order.

    A Python part keeps its line numbers (blank lines stand for what came before).

    Raises:
        InvalidDependency: a ``%pip install`` line has an option or no package.
    """
    if "%pip" not in code:
        return [("python", code)]
    lines = code.splitlines(True)
    segments: list[Segment] = []
    start = 0
    for index, packages in _pip_lines(lines):
        part = "".join(lines[start:index])
        if part.strip():
            segments.append(("python", "\n" * start + part))
        segments.append(("pip", packages))
        start = index + 1
    part = "".join(lines[start:])
    if part.strip() or not segments:
        segments.append(("python", "\n" * start + part))
    return segments


def _pip_lines(lines: list[str]) -> Iterable[tuple[int, tuple[str, ...]]]:
    """(index, packages) of each ``%pip install`` line that starts a statement."""
    state: list[Any] = [None, 0, False]  # open quote, bracket depth, backslash continuation
    for index, line in enumerate(lines):
        starts = state[0] is None and state[1] == 0 and not state[2]
        if starts and line.startswith("%pip"):
            words = _words(line, index)
            if words[:1] == ["install"]:
                packages = tuple(w for w in words[1:] if w not in _QUIET)
                _check(packages, index)
                yield index, packages
            continue  # any other %pip: the executor names what is supported
        linescan.scan_line(line, state)


def _words(line: str, index: int) -> list[str]:
    try:
        return shlex.split(line[len("%pip") :], comments=True)
    except ValueError as exc:
        raise InvalidDependency(f"line {index + 1}: cannot read {line.strip()!r}: {exc}") from None


def _check(packages: tuple[str, ...], index: int) -> None:
    options = [p for p in packages if p.startswith("-")]
    if options or not packages:
        what = f"the option {options[0]!r}" if options else "no package"
        raise InvalidDependency(
            f"line {index + 1}: %pip install got {what}: it takes package names only "
            "(`%pip install NAME...`, `-q` is accepted); for anything else run `!pip ...`"
        )


def collect(
    events: Iterable[protocol.Event],
    on_output: Callable[[str, str], None] | None = None,
    on_display: Callable[[Display], None] | None = None,
) -> ExecResult:
    """The final ``ExecResult`` of an execution's events, with its output kept.

    ``clear_output()`` drops the output and displays gathered so far (with
    ``wait=True``: when the next output arrives); an ``update_display`` replaces the
    data of every earlier display with its id, in place, or is appended when this
    execution has none (the display was shown by an earlier one).
    """
    # StringIO, not a list of pieces: a flood of tiny frames must not cost an object
    # each. Made when a stream's first output comes: most cells print nothing.
    parts: dict[str, io.StringIO] = {}
    displays: list[Display] = []
    result: ExecResult | None = None
    pending_clear = False
    with closing(_iterator(events)) as stream:
        for event in stream:
            if isinstance(event, ExecResult):
                result = event
                continue
            if isinstance(event, ClearOutput) or pending_clear:
                pending_clear = isinstance(event, ClearOutput) and event.wait
                if not pending_clear:
                    parts = {}
                    displays.clear()
                if isinstance(event, ClearOutput):
                    continue
            if isinstance(event, StreamEvent):
                if on_output is not None:
                    on_output(event.name, event.text)
                part = parts.get(event.name)
                if part is None:
                    part = parts[event.name] = io.StringIO()
                part.write(event.text)
            elif isinstance(event, Display):
                if on_display is not None:
                    on_display(event)
                _add_display(displays, event)
    if result is None:
        result = ExecResult(status="error")
    if not parts and not displays and not (result.stdout or result.stderr or result.displays):
        return result  # nothing to add (the common `pass`): no copy
    return replace(
        result,
        stdout=parts["stdout"].getvalue() if "stdout" in parts else "",
        stderr=parts["stderr"].getvalue() if "stderr" in parts else "",
        displays=tuple(displays),
    )


def _add_display(displays: list[Display], event: Display) -> None:
    if event.update and event.display_id is not None:
        shown = [i for i, d in enumerate(displays) if d.display_id == event.display_id]
        for i in shown:
            displays[i] = replace(displays[i], data=event.data)
        if shown:
            return
    displays.append(event)


def _iterator(events: Iterable[protocol.Event]) -> Generator[protocol.Event, None, None]:
    # A generator, so that closing it early closes (and interrupts) the stream.
    yield from events
