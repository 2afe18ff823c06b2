"""`codeexec sh`: run a program in a session, its exit status passed through.

Maps the arguments onto ``ContainerSession.run`` (``_commands.py``) and prints as
the program writes: its stdout on stdout, its stderr on stderr; ``--json`` prints
one document instead. Registered on the app by ``cli.py``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import _cli_output as out
from ._cli_options import JsonOpt, NameArg, parse_env
from .session import ContainerSession


def sh(
    name: NameArg,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- PROGRAM [ARG...]]",
            help="The program and its arguments, after `--`; no shell sees them.",
            show_default=False,
        ),
    ] = None,
    shell_command: Annotated[
        str | None,
        typer.Option(
            "-c", "--shell-command", metavar="STRING", help="Run STRING through `sh -c` instead."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0, metavar="SECONDS", help="Stop the command (SIGTERM, then SIGKILL) after this."
        ),
    ] = None,
    cwd: Annotated[
        str | None,
        typer.Option(metavar="DIR", help="Working directory (relative to /workspace)."),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", metavar="KEY=VALUE", help="Set a variable (repeatable)."),
    ] = None,
    as_json: JsonOpt = False,
) -> int:
    """Run a program in a session; its output streams here and its exit status is ours.

    The program runs as the session's user in /workspace, beside any Python code
    that runs there. Exit status: the program's own (128+N if signal N ended it);
    124 if --timeout ended it; 2 and 3 also mean codeexec's usage errors and Docker
    trouble, as for the other commands.

    Also: `codeexec sh default -c 'ls *.csv | wc -l'`, and --timeout, --cwd, -e.
    Example: codeexec sh default -- ls -la
    """
    if (not command) == (shell_command is None):
        raise typer.BadParameter(
            "give the command after `--` (codeexec sh NAME -- ls -la) or as -c STRING, not both"
        )
    variables = parse_env(env) or {}
    session = ContainerSession.attach(name)
    try:
        with out.ctrl_c_interrupts(session):
            result = session.run(
                shell_command if shell_command is not None else list(command or []),
                timeout=timeout, cwd=cwd, env=variables,
                on_output=None if as_json else out.echo_stream,
            )  # fmt: skip
    finally:
        session.close()
    if as_json:
        out.print_json(result.to_dict())
    elif result.timed_out:
        out.note(f"the command timed out after {timeout:g} s and was stopped")
    elif result.truncated:
        out.note("the output was cut at the output limit")
    return out.EXIT_TIMEOUT if result.timed_out else result.exit_code
