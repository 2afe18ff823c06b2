"""The work of ``codeexec exec`` and ``ls``, and the error handling of every command, without Typer.

Both the Typer app (``cli``) and the fast entry point (``_cli_fast``) run these, so
a plain ``exec`` prints the same bytes and exits with the same status either way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from . import _cli_output as out
from .errors import CodeexecError
from .models import ResultLimits


def run_exec(
    source: str,
    session: str,
    *,
    timeout: float | None = None,
    as_json: bool = False,
    save_dir: Path | None = None,
    output_limit: int = ResultLimits.output,
    display_limit: int = ResultLimits.displays,
    rollback: bool = False,
) -> int:
    """``codeexec exec``'s work once its arguments are read; returns the exit status."""
    from .session import ContainerSession

    live = ContainerSession.attach(session)
    limits = ResultLimits(output=output_limit, displays=display_limit)
    with out.ctrl_c_interrupts(live):
        result = live.execute(
            source,
            timeout=timeout,
            on_output=None if as_json else out.echo_stream,
            result_limits=limits,
            rollback_on_error=rollback,
            on_input=ask_terminal if sys.stdin.isatty() else None,
        )
    live.close()
    return out.report_exec(result, timeout, save_dir, as_json=as_json)


def ask_terminal(prompt: str) -> str | None:
    """Answer the code's ``input(prompt)`` from the terminal: the prompt on stderr
    (stdout holds only the code's output), one line back; None at end of input.
    Ctrl-C at the prompt abandons the execution (it is interrupted) at once."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
    try:
        sys.stdout.flush()
        sys.stderr.write(prompt)
        sys.stderr.flush()
        line = sys.stdin.readline()
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    return line.removesuffix("\n") if line else None


def run_ls(as_json: bool) -> None:
    """``codeexec ls``: every session, each running one asked for its idle time."""
    from . import maintenance

    out.report_sessions(maintenance.list_everywhere(), as_json)


def guarded(work: Callable[[], int | None], *, debug: bool) -> int:
    """Run a command's work; a CodeexecError, Ctrl-C or a closed stdout become its status."""
    try:
        return work() or 0
    except CodeexecError as exc:
        return out.report_error(exc, debug=debug)
    except KeyboardInterrupt:
        out.note("interrupted")
        return out.EXIT_INTERRUPTED
    except BrokenPipeError:  # `codeexec exec … | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return out.EXIT_RAISED
