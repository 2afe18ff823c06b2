"""`codeexec files ls|rm`: a session's files seen and removed from the shell.

Each maps its arguments onto ``session.files`` (``_filetree.py``) and prints;
``cli.py`` registers them on the ``files`` group.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from . import _cli_output as out
from ._cli_options import JsonOpt, NameArg
from .session import ContainerSession

if TYPE_CHECKING:
    from . import FileInfo

files_app = typer.Typer(
    no_args_is_help=True,
    help="List (--json too) and remove files in a session; copy them with `codeexec cp`."
    "\n\n\b\nExample:\n  codeexec files ls default results -r --json",
    short_help="List and remove files in a session.",
    rich_markup_mode=None,
)

RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="The whole tree.")]


def ls(
    name: NameArg,
    path: Annotated[
        str, typer.Argument(metavar="[PATH]", help="A directory or file (relative to /workspace).")
    ] = ".",
    recursive: RecursiveOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """List a directory in a session: kind, size, modification time, path.

    \b
    Examples:
      codeexec files ls default
      codeexec files ls default results -r --json
    """
    session = ContainerSession.attach(name)
    try:
        listed = session.files.list(path, recursive=recursive)
    finally:
        session.close()
    if as_json:
        out.print_json([f.to_dict() for f in listed])
        return
    for f in listed:
        print(_line(f))


def _line(f: FileInfo) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.mtime))
    kind = {"directory": "d", "symlink": "l", "file": "-"}.get(f.kind, "?")
    suffix = "/" if f.kind == "directory" else ""
    return f"{kind}{f.mode:04o} {f.size:>12} {stamp} {out.for_terminal(f.path, sys.stdout)}{suffix}"


def rm(
    name: NameArg,
    paths: Annotated[
        list[str], typer.Argument(metavar="PATH...", help="Files or directories to remove.")
    ],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Remove directories and their contents.")
    ] = False,
) -> None:
    """Remove files (a symlink itself, never its target) from a session.

    A directory needs -r unless it is empty. / and /workspace itself are refused.

    \b
    Example:
      codeexec files rm -r default results
    """
    session = ContainerSession.attach(name)
    try:
        for path in paths:
            session.files.remove(path, recursive=recursive)
    finally:
        session.close()


FILES_COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (("ls", ls), ("rm", rm))
