"""Shell commands in a session: ``run`` and ``run_stream`` (a mixin of ``ContainerSession``).

The executor spawns the program itself (the ``run`` op, docs/protocol.md) as the
session's user, inside the container's limits and in a process group of its own,
and streams its output over the session's connection: no ``docker exec``. A list
is the program and its arguments, never seen by a shell; a string runs through
``sh -c`` (or is split like a shell would, without interpreting it, when
``shell=False``).
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence

from ._executing import Executing
from ._results import CommandResult
from .errors import InvalidOption
from .models import StreamEvent

Command = str | Sequence[str]


def command_argv(command: Command, shell: bool | None = None) -> list[str]:
    """The program and arguments that ``command`` means (pure).

    A string runs through ``sh -c`` unless ``shell=False`` (then it is split with
    ``shlex``, nothing expanded); a list is never given to a shell.

    Raises:
        InvalidOption: an empty command, a list with ``shell=True``, or a non-string item.
    """
    if isinstance(command, str):
        if not command.strip():
            raise InvalidOption("the command is empty; give a program to run, e.g. ['ls', '-la']")
        if shell is False:
            try:
                return shlex.split(command)
            except ValueError as exc:
                raise InvalidOption(f"cannot split the command {command!r}: {exc}") from None
        return ["sh", "-c", command]
    argv = list(command)
    if shell:
        raise InvalidOption(
            "shell=True takes the command as one string (e.g. 'ls *.csv | wc -l'); "
            "a list is the program and its arguments, never given to a shell"
        )
    if not argv or not all(isinstance(a, str) for a in argv) or not argv[0]:
        raise InvalidOption(
            f"the command must be a string or a non-empty list of strings, not {command!r:.100}"
        )
    return argv


def _check_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    if env is None:
        return None
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or not isinstance(value, str):
            raise InvalidOption(
                f"env must map variable names (without '=') to strings; got {key!r}: {value!r}"
            )
    return dict(env)


class Commands(Executing):
    """``run`` and ``run_stream``."""

    def run(
        self,
        command: Command,
        *,
        shell: bool | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        on_output: Callable[[str, str], None] | None = None,
        output_limit: int | None = None,
    ) -> CommandResult:
        """Run a program in the session's container and return its ``CommandResult``.

        ``session.run(["ls", "-la"])`` runs ``ls`` with those arguments and no shell;
        ``session.run("ls *.csv | wc -l")`` runs the string through ``sh -c``. It runs
        as the session's user in ``/workspace`` (or ``cwd``), with the container's
        environment plus ``env``, beside any running Python code, which it cannot see.
        A non-zero exit is data (``exit_code``), not an exception.

        Args:
            command: a list (program and arguments) or a string (``sh -c``).
            shell: False splits a string with ``shlex`` instead of giving it to a shell.
            timeout: seconds before its process group gets SIGTERM (then SIGKILL);
                default: the session's timeout, else none. ``timed_out`` says so.
            cwd: the working directory (relative to /workspace).
            env: variables added to the environment.
            on_output: called with ``(stream_name, text)`` as output arrives.
            output_limit: bytes of output kept (default 16 MiB); the rest is dropped.

        Raises:
            InvalidOption: the command is empty or malformed (nothing ran).
            SessionBusy: this session object is running something else.
            NoSuchSession: the container is gone.
        """
        parts = {"stdout": io.StringIO(), "stderr": io.StringIO()}
        result = CommandResult(exit_code=-1)
        for item in self.run_stream(command, shell=shell, timeout=timeout, cwd=cwd, env=env,
                                    output_limit=output_limit):  # fmt: skip
            if isinstance(item, StreamEvent):
                parts[item.name].write(item.text)
                if on_output is not None:
                    on_output(item.name, item.text)
            else:
                result = item
        return CommandResult(
            **{**result.to_dict(), "stdout": parts["stdout"].getvalue(),
               "stderr": parts["stderr"].getvalue()}
        )  # fmt: skip

    def run_stream(
        self,
        command: Command,
        *,
        shell: bool | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        output_limit: int | None = None,
    ) -> Iterator[StreamEvent | CommandResult]:
        """Like :meth:`run`, yielding ``StreamEvent`` chunks as they come; the last
        item is the ``CommandResult`` (its stdout and stderr are empty: they came as
        events). Stopping the iteration early kills the command."""
        argv = command_argv(command, shell)
        env_vars = _check_env(env)
        with self._using() as client:
            yield from client.run(argv, cwd=cwd, env=env_vars, timeout=self._timeout(timeout),
                                  output_limit=output_limit)  # fmt: skip
