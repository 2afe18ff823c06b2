"""`codeexec cp`: ``docker cp``-style arguments mapped onto one session call.

:func:`plan_copy` parses the two arguments (pure); :func:`copy` attaches and calls
``ContainerSession.upload`` or ``download``, which do the work (the MCP face calls
them as ``write_file`` / ``read_file``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

import typer

from . import _cli_output as out
from ._cli_options import JsonOpt
from .errors import CodeexecError
from .session import ContainerSession, validate_name


@dataclass(frozen=True)
class CopyPlan:
    """One `codeexec cp`: the direction, the session, and both paths."""

    direction: Literal["upload", "download"]
    session: str
    local: str
    remote: str
    recursive: bool = False


def _split_remote(arg: str) -> tuple[str, str] | None:
    head, sep, tail = arg.partition(":")
    if not sep or "/" in head or "\\" in head or len(head) < 2:  # C:\x is a local path
        return None
    validate_name(head)
    return head, tail


def plan_copy(src: str, dst: str, *, recursive: bool = False) -> CopyPlan:
    """Parse ``docker cp``-style arguments: exactly one side is ``SESSION:PATH``.

    A destination that ends with ``/`` (or, for a download, is an existing host
    directory) receives the source under its own name, like ``cp``; with
    ``recursive`` the source is a directory.

    Raises:
        ValueError: neither or both sides name a session, a path is empty, or a
            local directory is given without ``recursive``.
    """
    s, d = _split_remote(src), _split_remote(dst)
    if (s is None) == (d is None):
        raise ValueError(
            "exactly one of SRC and DST must be SESSION:PATH, "
            "e.g. `codeexec cp data.csv default:data.csv`"
        )
    if s is not None:
        if not s[1]:
            raise ValueError(f"{src!r} names no file in the session")
        local = dst
        if recursive and (dst.endswith(("/", os.sep)) or Path(dst).is_dir()):
            local = str(Path(dst) / PurePosixPath(s[1].rstrip("/")).name)
        return CopyPlan("download", s[0], local, s[1], recursive)
    assert d is not None
    if Path(src).is_dir() and not recursive:
        raise ValueError(f"{src} is a directory: copy it with -r (--recursive)")
    remote = d[1]
    if not remote or remote.endswith("/"):
        remote += Path(src).resolve().name if recursive else Path(src).name
    return CopyPlan("upload", d[0], src, remote, recursive)


@dataclass(frozen=True)
class CopyResult:
    plan: CopyPlan
    local_path: str
    size: int = field(default=0)
    files: int = 1
    skipped: tuple[str, ...] = ()


def copy(plan: CopyPlan) -> CopyResult:
    """Carry out a :class:`CopyPlan` through the session's executor.

    Raises:
        NoSuchSession: the session does not run.
        FileTransferError: the file is missing, too large or not writable.
    """
    session = ContainerSession.attach(plan.session)
    try:
        if plan.recursive:
            moved = (
                session.upload_dir(plan.local, plan.remote)
                if plan.direction == "upload"
                else session.download_dir(plan.remote, plan.local)
            )
            return CopyResult(plan, plan.local, moved.bytes, moved.files, moved.skipped)
        if plan.direction == "upload":
            size = session.upload(plan.local, plan.remote)
            return CopyResult(plan, plan.local, size)
        path = session.download(plan.remote, plan.local)
        return CopyResult(plan, str(path), path.stat().st_size)
    finally:
        session.close()


def remote_display(plan: CopyPlan) -> str:
    remote = PurePosixPath(plan.remote)
    shown = remote if remote.is_absolute() else PurePosixPath("/workspace") / remote
    return f"{plan.session}:{shown}"


def cp(
    src: Annotated[str, typer.Argument(metavar="SRC", help="Source: a host path or SESSION:PATH.")],
    dst: Annotated[
        str, typer.Argument(metavar="DST", help="Destination: a host path or SESSION:PATH.")
    ],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Copy a directory and its contents.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy a file (or with -r a directory) between the host and a session.

    Relative paths in a session are in /workspace. A DST that ends with / (or is an
    existing host directory) receives SRC under its own name, like cp.
    Example: codeexec cp -r results default:  (and back: cp default:out.png .)
    """
    try:
        plan = plan_copy(src, dst, recursive=recursive)
    except (ValueError, CodeexecError) as exc:
        raise typer.BadParameter(str(exc), param_hint=["SRC", "DST"]) from None
    done = copy(plan)
    out.report_copy(done, remote_display(plan), as_json=as_json)
