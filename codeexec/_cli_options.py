"""Arguments several ``codeexec`` commands share, checked before any docker call."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
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


def help_text(func: Callable[..., object]) -> str:
    """A command's docstring as its --help, a last ``Example: …`` line set apart, unwrapped."""
    doc = inspect.getdoc(func) or ""
    body, sep, example = doc.rpartition("\nExample: ")
    return f"{body.rstrip()}\n\n\b\nExample:\n  {example}" if sep else doc


def print_version(asked: bool) -> None:
    if asked:
        from . import __version__

        print(f"codeexec {__version__}")
        raise typer.Exit()


def complete_names(incomplete: str) -> list[str]:
    """Shell completion: the sessions on this engine whose name starts with ``incomplete``."""
    from .session import list_sessions

    try:
        return [s.name for s in list_sessions() if s.name.startswith(incomplete)]
    except CodeexecError:  # no engine: nothing to offer
        return []


def read_code(code: str | None, file: Path | None) -> str:
    """The code to run: CODE, stdin for ``-`` (or for no CODE when it is piped), or --file's."""
    if code is not None and file is not None:
        raise typer.BadParameter("give CODE or --file, not both", param_hint=["CODE", "--file"])
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {file}: {exc.strerror}", param_hint=["--file"]
            ) from None
    if code is not None and code != "-":
        return code
    if code is None and (sys.stdin is None or sys.stdin.isatty()):
        raise typer.BadParameter(
            "no code to run: give CODE, `-` or --file, or pipe the code in", param_hint=["CODE"]
        )
    source = sys.stdin.read()
    if code is None and not source.strip():
        raise typer.BadParameter("no code to run: stdin was empty", param_hint=["CODE"])
    return source


def tail_lines(value: str) -> int | None:
    """``--tail``: a number of lines (0: none, as in docker) or ``all`` (None)."""
    if value == "all":
        return None
    if not value.isdigit():
        raise typer.BadParameter(
            f"{value!r} is not a number of lines or 'all'", param_hint=["--tail"]
        )
    return int(value)


def parse_env(values: list[str] | None) -> dict[str, str] | None:
    """``-e KEY=VALUE`` options as a mapping (None when there are none)."""
    env: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=["--env"])
        env[key] = value
    return env or None


SessionOpt = Annotated[
    str,
    typer.Option(
        "--session", "-s", callback=check_name, metavar="NAME", help="Session name.",
        autocompletion=complete_names,
    ),
]  # fmt: skip
NameArg = Annotated[
    str,
    typer.Argument(
        callback=check_name, metavar="NAME", help="Session name.", autocompletion=complete_names
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help='Print one JSON document on stdout (on failure: {"error": {…}}).'),
]
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


# `codeexec start`'s per-connection settings (as SessionOptions has them).
TimeoutOpt = Annotated[
    float | None,
    typer.Option(metavar="SECONDS", help="Default seconds per execution [default: no limit]."),
]
OutputLimitOpt = Annotated[
    int | None,
    typer.Option(metavar="BYTES", min=0, help="Default bytes of stdout+stderr kept per execution."),
]
ReadOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--read-only/--no-read-only",
        help="Read-only root filesystem (only /workspace and /tmp writable).",
    ),
]
TransportOpt = Annotated[
    str,
    typer.Option(
        metavar="auto|tcp|exec",
        help="How this start connects: tcp, or exec (the docker exec relay).",
    ),
]
EnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--env", "-e", metavar="KEY=VALUE",
        help="Environment variable of the session's Python process (repeatable).",
    ),
]  # fmt: skip


# `codeexec start`'s and `exec`'s own arguments, kept here so cli.py reads as the commands.
DepOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--dep", "-d", metavar="REQUIREMENT",
        help="A pip requirement such as 'numpy==2.*' (repeatable).",
    ),
]  # fmt: skip
RequirementsOpt = Annotated[
    Path | None,
    typer.Option(
        "--requirements", "-r", metavar="FILE", help="A requirements.txt file.", dir_okay=False
    ),
]
RuntimeOpt = Annotated[
    str | None, typer.Option(metavar="RUNTIME", help="Docker runtime, e.g. runsc.")
]
BuildTimeoutOpt = Annotated[
    float, typer.Option(metavar="SECONDS", help="Seconds allowed for the build.")
]
ReplaceOpt = Annotated[
    bool,
    typer.Option("--replace", help="Replace a running session of that name whose settings differ."),
]
CodeArg = Annotated[
    str | None,
    typer.Argument(
        metavar="CODE", show_default=False,
        help="Python code to run; '-' (or no CODE, when piped) reads it from stdin.",
    ),
]  # fmt: skip
FileOpt = Annotated[
    Path | None,
    typer.Option("--file", "-f", metavar="FILE", help="Run the code in this file.", dir_okay=False),
]
ExecTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        metavar="SECONDS",
        help="Seconds before the code is interrupted (exit 124) [default: no limit].",
    ),
]
SaveDirOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR",
        help="Where to save plots and other rich outputs [default: a new temp dir].",
        file_okay=False,
    ),
]
ExecOutputLimitOpt = Annotated[
    int,
    typer.Option(metavar="BYTES", min=0, help="Bytes of stdout+stderr kept; the rest is dropped."),
]
ExecEnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--env", "-e", metavar="KEY=VALUE",
        help="Environment variable set for this execution only (repeatable).",
    ),
]  # fmt: skip
# `codeexec stop`'s and `gc`'s.
NamesArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="NAME...", help="Sessions to stop.", show_default=False,
        autocompletion=complete_names,
    ),
]  # fmt: skip
PrefixOpt = Annotated[
    str,
    typer.Option(metavar="PREFIX", help="With --all: only sessions whose name starts with this."),
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")]
AllImagesOpt = Annotated[
    bool,
    typer.Option(
        "--all-images", help="Also remove unused tagged images and the package cache volume."
    ),
]
IdleForOpt = Annotated[
    float | None,
    typer.Option(metavar="SECONDS", help="Also stop running sessions idle for at least this long."),
]
RollbackOpt = Annotated[
    bool, typer.Option("--rollback", help="If the code fails, undo what it changed.")
]
SnapshotsOlderThanOpt = Annotated[
    float | None,
    typer.Option(metavar="SECONDS", help="Also remove snapshots this old (0: all)."),
]
DebugOpt = Annotated[
    bool,
    typer.Option("--debug", envvar="CODEEXEC_DEBUG", help="Show Python tracebacks of errors."),
]
VersionOpt = Annotated[
    bool,
    typer.Option("--version", is_eager=True, callback=print_version, help="Print the version."),
]
