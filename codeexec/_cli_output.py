"""What the ``codeexec`` command prints, and the status it exits with.

Results go to stdout (``--json`` gives exactly one JSON document); progress, notes
and errors go to stderr. Nothing here imports Rich until a terminal needs colour or
a spinner, so the ``exec`` path stays quick.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from .errors import CodeexecError, ContainerStartError, ImageBuildError, InvalidOption
from .models import ExecResult, ImageInfo, SessionInfo

if TYPE_CHECKING:
    from ._cli_copy import CopyResult
    from .maintenance import Check, GcReport, Listing, StopReport

EXIT_OK, EXIT_RAISED, EXIT_USAGE, EXIT_TROUBLE = 0, 1, 2, 3
EXIT_TIMEOUT, EXIT_INTERRUPTED = 124, 130
EXIT_BY_STATUS = {
    "ok": EXIT_OK,
    "error": EXIT_RAISED,
    "timeout": EXIT_TIMEOUT,
    "interrupted": EXIT_INTERRUPTED,
}

EPILOG = """\
Exit status: 0 ok; 1 the code raised (or pip failed); 2 usage error (bad option,
bad dependency); 3 Docker or session trouble (engine unreachable, session not
found, build failed); 124 the code timed out; 130 interrupted (Ctrl-C).

Set CODEEXEC_DEBUG=1 or pass --debug to see Python tracebacks.
"""


class _Interruptible(Protocol):
    def interrupt(self) -> None: ...


class _AsDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class State:
    log_shown = False  # progress lines already put the build log on stderr


def plain(text: str) -> str:
    """Without the colour escapes that docker puts into build logs."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# Colours (SGR: ESC [ digits ; m) only change how text looks; every other control
# character or sequence (window title OSC 0/2, clipboard OSC 52, cursor moves,
# C1 controls such as CSI U+009B) could act on the person's terminal.
_SAFE_OR_CONTROL = re.compile(r"(\x1b\[[0-9;]*m)|[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]")


def _escape_control(match: re.Match[str]) -> str:
    return match.group(1) or ascii(match.group(0))[1:-1]


def for_terminal(text: str, stream: TextIO) -> str:
    """``text`` as the session's code wrote it, but shown harmless on a terminal.

    On a TTY, control characters other than newline, tab, carriage return and
    colours are written escaped (``\x1b``); pipes and files get the exact text.
    """
    if not stream.isatty():
        return text
    return _SAFE_OR_CONTROL.sub(_escape_control, text)


def note(text: str, style: str | None = None) -> None:
    """A message for the person, on stderr (coloured through Rich only on a terminal)."""
    text = for_terminal(text, sys.stderr)  # it may quote a build log or a container's
    if style and sys.stderr.isatty():
        console().print(text, style=style, markup=False, highlight=False)
    else:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


@functools.cache
def console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    rows = list(rows)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        cells = (c.ljust(w) for c, w in zip(row, widths, strict=True))
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


def duration(seconds: float | None) -> str:
    if not seconds:
        return "never" if seconds is not None else "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def age(created: str) -> str:
    try:
        then = datetime.fromisoformat(created)
    except ValueError:
        return "-"
    return duration(max((datetime.now(timezone.utc) - then).total_seconds(), 1))


@contextmanager
def progress() -> Iterator[Callable[[str], None]]:
    """Progress lines: a transient spinner on a terminal, plain stderr lines otherwise."""
    State.log_shown = False
    if not sys.stderr.isatty():

        def write_line(line: str) -> None:
            State.log_shown = True
            note(line)

        yield write_line
        return
    with console().status("starting…") as status:
        yield lambda line: status.update(for_terminal(line[:100], sys.stderr).replace("[", r"\["))


def echo_line(text: str) -> None:
    """Text from a container (its log) on stdout, harmless on a terminal."""
    sys.stdout.write(for_terminal(text, sys.stdout))
    sys.stdout.flush()


def echo_stream(name: str, text: str) -> None:
    stream = sys.stderr if name == "stderr" else sys.stdout
    stream.write(for_terminal(text, stream))
    stream.flush()


@contextmanager
def ctrl_c_interrupts(session: _Interruptible) -> Iterator[None]:
    """The first Ctrl-C interrupts the running code; a second one abandons it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[bool] = []

    def handler(signum: int, frame: object) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)
        note("interrupting… (Ctrl-C again to stop waiting)")
        threading.Thread(target=session.interrupt, daemon=True).start()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def report_exec(
    result: ExecResult, timeout: float | None, save_dir: Path | None, *, as_json: bool
) -> int:
    """Everything after the live output (value, traceback, notes, saved displays).

    With ``as_json``, the result as one JSON document, and the displays saved only
    where ``save_dir`` asks. Returns the exit status.
    """
    if as_json:
        print_json(result.to_dict())
        if save_dir is not None:
            save_displays(result, save_dir)
        return EXIT_BY_STATUS[result.status]
    if result.value is not None:
        if result.stdout and not result.stdout.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.write(for_terminal(result.value, sys.stdout) + "\n")
    if result.error is not None:
        sys.stderr.write(for_terminal(result.error.format(), sys.stderr) + "\n")
    if result.status == "timeout":
        note(f"codeexec: timed out after {timeout:g} s; the code was interrupted", "red")
    elif result.status == "interrupted":
        note("codeexec: interrupted", "red")
    if result.rolled_back:
        note("codeexec: rolled back: the session is as it was before this code", "yellow")
    if result.restarted:
        note(
            "codeexec: the code ignored the interrupt, so the session's Python process "
            "was restarted: every variable is gone",
            "yellow",
        )
    if result.truncated:
        note(
            "codeexec: the result was truncated: output, displays, value or traceback went "
            "over its limit (see --output-limit, --display-limit)",
            "yellow",
        )
    save_displays(result, save_dir)
    return EXIT_BY_STATUS[result.status]


def report_install(result: ExecResult, *, as_json: bool = False) -> int:
    """pip's output went by live; a failure adds its error. Returns the exit status."""
    if as_json:
        print_json(result.to_dict())
        return EXIT_BY_STATUS[result.status]
    if result.error is not None:
        note(result.error.format(), "red")
    return EXIT_BY_STATUS[result.status]


def save_displays(result: ExecResult, save_dir: Path | None) -> None:
    if not result.displays:
        return
    if save_dir is None:
        import tempfile

        save_dir = Path(tempfile.mkdtemp(prefix="codeexec-out-"))
    for path in result.save_displays(save_dir):
        note(f"saved {path}")


def session_row(s: SessionInfo, idle: float | None = None) -> list[str]:
    deps = ", ".join(s.dependencies) or "-"
    idle_text = "-" if idle is None else duration(idle) if idle >= 1 else "0s"
    return [
        s.name,
        s.status,
        deps,
        f"{age(s.created)} / {duration(s.max_lifetime)}",
        f"{idle_text} / {duration(s.idle_timeout)}",
        s.image,
        s.engine or "-",
        s.route or "-",
    ]


def image_row(i: ImageInfo) -> list[str]:
    return [i.tag, ", ".join(i.dependencies) or "-", i.base_image, i.created[:19], i.size]


# -- one function per command's result ----------------------------------------------------


def report_error(exc: CodeexecError, *, debug: bool, as_json: bool = False) -> int:
    """One line on stderr (plus the build or container log); returns the exit status.

    The line names the option refused (``--memory: …``) and uses the CLI's words
    (``exc.cli_message``); with ``as_json`` stdout gets :func:`error_document` too.
    """
    if debug:
        traceback.print_exc()
    option = getattr(exc, "option", None)
    message = (f"--{option.replace('_', '-')}: " if option else "") + exc.cli_message
    status = EXIT_USAGE if isinstance(exc, InvalidOption) else EXIT_TROUBLE
    if as_json:
        print_json(error_document(type(exc).__name__, message, status))
    note("error: " + " ".join(plain(message).split()), style="red")  # one line
    extra = plain(getattr(exc, "log_tail", "") or getattr(exc, "container_log", ""))
    if isinstance(exc, ImageBuildError) and State.log_shown:
        extra = ""
        note("(the build log is above)")
    if extra and isinstance(exc, (ImageBuildError, ContainerStartError)):
        label = "build log" if isinstance(exc, ImageBuildError) else "container log"
        note(f"--- end of the {label} ---\n{extra.rstrip()}\n---")
    return status


def error_document(kind: str, message: str, status: int) -> dict[str, Any]:
    """The one JSON document a failed command prints with ``--json``."""
    return {"error": {"type": kind, "message": message, "exit_status": status}}


def jsonable(value: Any) -> Any:
    """A report (dataclasses, their ``to_dict``, tuples) as plain JSON values."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def report_sessions(listing: Listing, as_json: bool) -> None:
    headers = ["NAME", "STATUS", "DEPENDENCIES", "AGE / LIFETIME", "IDLE / TIMEOUT", "IMAGE"]
    headers += ["ENGINE", "ROUTE"]
    listed = listing.sessions
    rows = [session_row(s.info, s.idle_seconds) for s in listed]
    _listing(listed, rows, headers, as_json, "no sessions; start one with `codeexec start`")
    for line in listing.unreachable:
        note(f"engine not answering: {line}", "yellow")


def report_images(found: Sequence[ImageInfo], as_json: bool) -> None:
    headers = ["IMAGE", "DEPENDENCIES", "BASE", "CREATED", "SIZE"]
    _listing(found, map(image_row, found), headers, as_json, "no codeexec images yet")


def _listing(
    items: Sequence[_AsDict],
    rows: Iterable[Sequence[str]],
    headers: Sequence[str],
    as_json: bool,
    empty: str,
) -> None:
    if as_json:
        print_json([i.to_dict() for i in items])
    elif not items:
        note(empty)
    else:
        table(headers, rows)


def report_stop(report: StopReport, *, all_: bool, as_json: bool = False) -> int:
    if as_json:  # one document, missing names included: a failure (exit 3) but not only one
        print_json(jsonable(report))
    for name in () if as_json else report.stopped:
        print(name)
    for name in report.missing:
        note(f"error: no session named {name!r}; `codeexec ls` lists them", "red")
    if all_ and not report.stopped:
        note("no sessions to stop")
    return EXIT_TROUBLE if report.missing else EXIT_OK


def report_gc(report: GcReport, *, as_json: bool = False) -> None:
    if as_json:
        print_json(jsonable(report))
        return
    verb = "would remove" if report.dry_run else "removed"
    for c in report.containers:
        print(f"{verb} container {c.container_name} (session {c.name}, {c.status})")
    for i in report.images:
        print(f"{verb} image {i.tag} ({i.image_id[:19]})")
    for v in report.volumes:
        print(f"{verb} package cache volume {v}")
    for cid in report.reaped:
        print(f"removed the gVisor sandbox left by failed start {cid[:12]}")
    for line in report.failed:
        note(f"could not remove {line}", "yellow")
    if report.kept_images:
        note(f"kept {len(report.kept_images)} unused cached image(s); --all-images removes them")


def report_checks(checks: Sequence[Check], *, as_json: bool = False) -> int:
    if as_json:
        print_json({"ok": all(c.ok for c in checks), "checks": jsonable(checks)})
    for check in checks:
        note(
            f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}",
            "green" if check.ok else "red",
        )
        if check.fix:
            note(f"     fix: {check.fix}")
    return EXIT_OK if all(c.ok for c in checks) else EXIT_TROUBLE


def report_copy(done: CopyResult, remote: str, *, as_json: bool = False) -> None:
    if as_json:
        print_json(jsonable(done))
        return
    local = done.local_path
    arrow = f"{local} -> {remote}" if done.plan.direction == "upload" else f"{remote} -> {local}"
    files = f"{done.files} files, " if done.plan.recursive else ""
    note(f"copied {files}{done.size} bytes: {arrow}")
    if done.skipped:
        note(f"skipped {len(done.skipped)} symlink(s) or special file(s): "
             + ", ".join(done.skipped[:10]) + (" …" if len(done.skipped) > 10 else ""))  # fmt: skip
