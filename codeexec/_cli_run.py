"""The work of ``codeexec exec`` and ``ls``, and the error handling of every command, without Typer.

Both the Typer app (``cli``) and the fast entry point (``_cli_fast``) run these, so
a plain ``exec`` prints the same bytes and exits with the same status either way.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from . import _cli_output as out
from .errors import CodeexecError, InvalidOption, NoSuchSession
from .models import ResultLimits

if TYPE_CHECKING:
    from .session import ContainerSession

DEFAULT_SESSION = "default"  # the session `exec` starts when it is missing


def run_exec(
    source: str,
    session: str,
    *,
    timeout: float | None = None,
    as_json: bool = False,
    save_dir: Path | None = None,
    output_limit: int = ResultLimits.output,
    display_limit: int = ResultLimits.displays,
    env: Mapping[str, str] | None = None,
    rollback: bool = False,
) -> int:
    """``codeexec exec``'s work once its arguments are read; returns the exit status."""
    live = attach_or_start(session)
    limits = ResultLimits(output=output_limit, displays=display_limit)
    with out.ctrl_c_interrupts(live):
        result = live.execute(
            source,
            timeout=timeout,
            on_output=None if as_json else out.echo_stream,
            result_limits=limits,
            env=env,
            rollback_on_error=rollback,
            on_input=ask_terminal if sys.stdin.isatty() else None,
        )
    live.close()
    shown = live.default_timeout if timeout is None else timeout  # (the recorded one)
    return out.report_exec(result, shown, save_dir, as_json=as_json)


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


def attach_or_start(name: str) -> ContainerSession:
    """The running session ``name``; "default" is started if missing, as MCP's execute_code does.

    Other names are not: a typo should not start (and build) a session nobody meant.
    """
    from .session import ContainerSession

    try:
        return ContainerSession.attach(name)
    except NoSuchSession:
        if name != DEFAULT_SESSION:
            raise
    with out.progress() as on_progress:
        live = ContainerSession.start(name, on_progress=on_progress)
    out.note(
        f"codeexec: started session {name!r} with no extra dependencies "
        "(`codeexec install PACKAGE...` adds some)"
    )
    return live


def run_ls(as_json: bool, *, quiet: bool = False, template: str | None = None) -> None:
    """``codeexec ls``: every session, each running one asked for its idle time.

    ``quiet``: only the names (no session is asked anything); ``template``: one
    line per session, a ``str.format`` string over the fields of ``--json``.
    """
    from . import maintenance

    if quiet:
        from .session import list_sessions

        sys.stdout.writelines(f"{s.name}\n" for s in list_sessions())
        return
    if template is None:
        out.report_sessions(maintenance.list_everywhere(), as_json)
        return
    check_template(template)
    sys.stdout.writelines(template.format(**s.to_dict()) + "\n" for s in maintenance.list_idle())


def check_template(template: str) -> None:
    """``ls --format``'s template, refused unless each field is one ``--json`` has."""
    import dataclasses
    import string

    from .models import SessionInfo

    known = {f.name for f in dataclasses.fields(SessionInfo)} | {"idle_seconds"}
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise InvalidOption(
            f"{template!r} is not a format string: {exc}", option="format"
        ) from None
    for name in names:
        if re.split(r"[.\[]", name)[0] not in known:
            raise InvalidOption(
                f"{{{name}}} is not a session field: use {{name}}, {{status}}, "
                f"{{image}} … (any of: {', '.join(sorted(known))})",
                option="format",
            )


def guarded(work: Callable[[], int | None], *, debug: bool, as_json: bool = False) -> int:
    """Run a command's work; a CodeexecError, Ctrl-C or a closed stdout become its status.

    With ``as_json`` an error is also one JSON document on stdout (``error_document``).
    """
    try:
        return work() or 0
    except CodeexecError as exc:
        return out.report_error(exc, debug=debug, as_json=as_json)
    except KeyboardInterrupt:
        out.note("interrupted")
        return out.EXIT_INTERRUPTED
    except BrokenPipeError:  # `codeexec exec … | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return out.EXIT_RAISED
