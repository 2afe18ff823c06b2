"""The ``codeexec`` console script: ``exec`` in its plain forms, and ``ls``, without Typer.

``codeexec exec [-s NAME] CODE`` (CODE may be ``-`` for stdin, or left out when stdin
is piped: ``echo 'print(1)' | codeexec exec``) is the command people
and scripts run in a loop, and Typer, Click and Rich take longer to import than the
execution takes (docs/performance.md). This entry point recognises exactly those
forms and runs them through the same steps as the Typer command (``_cli_run``), so
output bytes and exit statuses are the same. Everything else (another command, any
other option, ``--debug`` or ``CODEEXEC_DEBUG``, a name that does not validate,
anything Click would have to parse) goes to the full Typer app. ``ls``, ``ls -q`` and
``ls --json`` (no arguments to read) are the other command taken here.
"""

from __future__ import annotations

import os
import sys

from ._cli_run import guarded, run_exec, run_ls
from .errors import CodeexecError

_SESSION_FLAGS = ("-s", "--session")


def plain_exec(args: list[str], *, piped: bool = False) -> tuple[str, str] | None:
    """``(session, code)`` when ``args`` is ``exec [-s NAME] CODE`` in a plain form, else None.

    Plain: each token is ``exec``, a session flag with its valid name, or one CODE
    that is ``-`` or does not start with ``-``; nothing is repeated. Anything that
    Click might read differently is left to it. With ``piped`` (stdin is not a
    terminal) a missing CODE reads stdin, as ``-`` does.
    """
    if not args or args[0] != "exec" or os.environ.get("CODEEXEC_DEBUG") is not None:
        return None
    session: str | None = None
    code: str | None = None
    rest = args[1:]
    while rest:
        token, *rest = rest
        if token in _SESSION_FLAGS and session is None and rest:
            session, *rest = rest
            if session.startswith("-") or not _valid_name(session):
                return None
        elif code is None and (token == "-" or not token.startswith("-")):
            code = token
        else:
            return None
    if code is None:  # `… | codeexec exec`: the code comes on stdin
        if not piped:
            return None
        code = "-"
    return session or "default", code


def _valid_name(name: str) -> bool:
    from .options import validate_name

    try:
        validate_name(name)
    except CodeexecError:
        return False
    return True


def main() -> None:
    """Entry point of the ``codeexec`` console script."""
    args = sys.argv[1:]
    if args in (["ls"], ["ls", "--json"], ["ls", "-q"]) and "CODEEXEC_DEBUG" not in os.environ:
        as_json, quiet = args[1:] == ["--json"], args[1:] == ["-q"]
        sys.exit(guarded(lambda: run_ls(as_json, quiet=quiet), debug=False, as_json=as_json))
    plan = plain_exec(args, piped=sys.stdin is not None and not sys.stdin.isatty())
    source = sys.stdin.read() if plan is not None and plan[1] == "-" else None
    if plan is None or (source is not None and not source.strip() and "-" not in args):
        # (empty piped stdin and no CODE: Typer, reading the same empty stdin, says so)
        from .cli import main as full

        full()
        return
    session, code = plan

    def work() -> int:
        return run_exec(code if source is None else source, session)

    sys.exit(guarded(work, debug=False))
