"""`codeexec checkpoint`, `restore`, `checkpoints` and `fork`: a session's saved
states and copies (docs/snapshots.md, Tier 1). Each maps its arguments onto one ContainerSession
call and formats the answer; ``cli`` registers them on the Typer app."""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import typer

from . import _cli_output as out
from ._checkpoint import Checkpoint, validate_tag
from ._cli_options import JsonOpt, NameArg, check_name
from .session import ContainerSession

TagArg = Annotated[
    str | None,
    typer.Argument(metavar="TAG", help="The checkpoint's name [default: cp1, cp2, ...].",
                   show_default=False),
]  # fmt: skip


def _line(c: Checkpoint) -> str:
    when = datetime.datetime.fromtimestamp(c.created).strftime("%H:%M:%S") if c.created else "-"
    private = "-" if c.private_bytes is None else f"{c.private_bytes / 2**20:.1f} MiB"
    state = "" if c.alive else "  LOST (killed, probably at the memory limit)"
    return f"{c.name}\t{when}\tfiles={'yes' if c.files else 'no'}\tprivate={private}{state}"


def checkpoint(
    name: NameArg = "default",
    tag: TagArg = None,
    files: Annotated[
        bool, typer.Option("--files", help="Save /workspace too (up to 100 MiB).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Save the session's Python state as TAG.

    Its variables, imports and objects; restore it with `codeexec restore NAME TAG`,
    as often as needed. Without --files the files in /workspace are not part of it.
    Example: codeexec checkpoint default before-cleanup --files
    """
    if tag is not None:
        validate_tag(tag)  # before any docker call
    live = ContainerSession.attach(name)
    try:
        saved = live.checkpoint(tag, files=files)
    finally:
        live.close()
    if as_json:
        out.print_json(saved.to_dict())
    else:
        print(saved.name)


def restore(
    name: NameArg,
    tag: Annotated[str, typer.Argument(metavar="TAG", help="The checkpoint to go back to.")],
    as_json: JsonOpt = False,
) -> None:
    """Put the session back to checkpoint TAG.

    The checkpoint stays for later restores.
    Example: codeexec restore default before-cleanup
    """
    validate_tag(tag)
    live = ContainerSession.attach(name)
    try:
        restored = live.restore(tag)
    finally:
        live.close()
    if as_json:
        out.print_json(restored.to_dict())
    else:
        out.note(f"codeexec: {name} is back at checkpoint {restored.name}")


def checkpoints(
    name: NameArg = "default",
    drop: Annotated[
        list[str] | None,
        typer.Option("--drop", metavar="TAG", help="Drop this checkpoint (repeatable)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the session's checkpoints, or drop some.

    Each with its name, time, files and private memory.
    Example: codeexec checkpoints default --json
    """
    for tag in drop or []:
        validate_tag(tag)
    live = ContainerSession.attach(name)
    try:
        for tag in drop or []:
            live.drop(tag)
        listed = live.checkpoints()
    finally:
        live.close()
    if as_json:
        out.print_json([c.to_dict() for c in listed])
    else:
        for c in listed:
            print(_line(c))


COMMANDS: tuple[tuple[str, Any], ...] = (
    ("checkpoint", checkpoint),
    ("restore", restore),
    ("checkpoints", checkpoints),
)


def fork(
    source: Annotated[
        str, typer.Argument(callback=check_name, metavar="SRC", help="The session to copy.")
    ],
    name: Annotated[
        str, typer.Argument(callback=check_name, metavar="DST", help="The new session's name.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Start session DST as a copy of SRC's Python state.

    DST runs in SRC's container; SRC keeps running. DST is a session like any other
    (exec, checkpoint, stop); stopping SRC stops its forks too.
    Example: codeexec fork default try-other-model
    """
    live = ContainerSession.attach(source)
    try:
        forked = live.fork(name)
    finally:
        live.close()
    forked.close()
    if as_json:
        out.print_json({"name": forked.name, "source": source, "container": forked.container_id})
    else:
        print(forked.name)


COMMANDS += (("fork", fork),)
