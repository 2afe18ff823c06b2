"""Arguments several ``codeexec`` commands share, checked before any docker call."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import CodeexecError
from .session import validate_name


def check_name(value: str) -> str:
    try:
        return validate_name(value)
    except CodeexecError as exc:
        raise typer.BadParameter(exc.message) from None


def check_names(values: list[str] | None) -> list[str]:
    return [check_name(v) for v in values or []]


def read_code(code: str | None, file: Path | None) -> str:
    """The code to run: the CODE argument, stdin for ``-``, or the --file's text."""
    if (code is None) == (file is None):
        raise typer.BadParameter("give CODE (or `-` to read stdin) or --file, not both")
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc.strerror}") from None
    return sys.stdin.read() if code == "-" else str(code)


SessionOpt = Annotated[
    str, typer.Option("--session", "-s", callback=check_name, metavar="NAME", help="Session name.")
]
NameArg = Annotated[str, typer.Argument(callback=check_name, metavar="NAME", help="Session name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
DisplayLimitOpt = Annotated[
    int,
    typer.Option(
        metavar="BYTES",
        min=0,
        help="Bytes of plots and other rich output kept per execution (as sent: base64 "
        "for images); past it they are replaced by a note.",
    ),
]


# The session settings `codeexec start` and `codeexec mcp` both take (for the sessions a
# model starts), declared once so their names, defaults and help agree.
BaseImageOpt = Annotated[
    str | None,
    typer.Option(
        metavar="IMAGE",
        help="Image to build on [default: $CODEEXEC_BASE_IMAGE or python:3.12-slim].",
    ),
]
MemoryOpt = Annotated[str, typer.Option(metavar="SIZE", help="Memory limit, e.g. 512m, 2g.")]
CpusOpt = Annotated[float, typer.Option(metavar="N", help="CPU limit.")]
NetworkOpt = Annotated[
    str,
    typer.Option(metavar="NETWORK", help="Docker network; 'none' cuts it off ('host' is refused)."),
]
IdleTimeoutOpt = Annotated[
    float,
    typer.Option(
        metavar="SECONDS",
        help="Seconds without activity before a session removes itself; 0 = never.",
    ),
]
MaxLifetimeOpt = Annotated[
    float,
    typer.Option(
        metavar="SECONDS",
        min=0,
        help="Seconds after its start when a session removes itself even if busy; 0 = no limit.",
    ),
]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        metavar="ENGINE",
        help="The configured engine to start on (CODEEXEC_ENGINES) [default: where the "
        "name runs, else the least loaded].",
        show_default=False,
    ),
]
