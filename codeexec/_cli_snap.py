"""`codeexec snapshot`, `resume`, `snapshots` and `snapshots rm`: whole-session snapshots.

Registered on the Typer app by ``cli.py`` (``register``); each command maps its
arguments onto ``ContainerSession.snapshot`` / ``resume`` or the snapshot store
(``codeexec.snapshot``) and formats the answer. docs/snapshots.md explains them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

from . import _cli_output as out
from ._cli_options import JsonOpt
from ._cli_run import guarded

_METHOD = "auto (default: checkpoint where the engine can, else portable), checkpoint, portable."


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _age(seconds: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit}"
    return f"{seconds:.0f}s"


def _row(snap: Any) -> str:
    size, age = _size(snap.size), _age(snap.age)
    return f"{snap.name:<32} {size:>10} {age:>5}  {snap.method:<10} {snap.session}"


def _unsaved(names: dict[str, str], what: str) -> None:
    for name, reason in sorted(names.items()):
        out.note(f"{what} {name!r}: {reason}")


snapshots_app = typer.Typer(
    help="List whole-session snapshots, or remove them (snapshots rm).\n\n"
    "Each with its name, size, age and method.\n\n\b\nExample:\n  codeexec snapshots --json",
    invoke_without_command=True,
    no_args_is_help=False,
)


@snapshots_app.callback()
def snapshots(
    ctx: typer.Context,
    as_json: JsonOpt = False,
) -> None:
    """List whole-session snapshots (name, size, age, method); `snapshots rm` removes them."""
    if ctx.invoked_subcommand is not None:
        return
    from .snapshot import list_snapshots, snapshot_root

    def work() -> None:
        found = list_snapshots()
        if as_json:
            print(json.dumps([s.to_dict() for s in found], indent=1))
            return
        if not found:
            out.note(f"no snapshots in {snapshot_root()}")
            return
        print(f"{'NAME':<32} {'SIZE':>10} {'AGE':>5}  {'METHOD':<10} SESSION")
        for snap in found:
            print(_row(snap))
        out.note(f"{_size(sum(s.size for s in found))} in {snapshot_root()}")

    _exit(guarded(work, debug=False, as_json=as_json))


@snapshots_app.command("rm")
def snapshots_rm(
    names: Annotated[list[str], typer.Argument(metavar="SNAP...", help="Snapshots to remove.")],
    as_json: JsonOpt = False,
) -> None:
    """Remove snapshots and free their disk space.

    Example: codeexec snapshots rm before-fit --json
    """
    from .snapshot import remove

    def work() -> None:
        removed = []
        for name in names:
            size = remove(name)
            removed.append({"name": name, "size": size})
            if not as_json:
                print(f"removed {name} ({_size(size)})")
        if as_json:
            print(json.dumps({"removed": removed}, indent=1))

    _exit(guarded(work, debug=False, as_json=as_json))


def prune_snapshots(older_than: float, dry_run: bool) -> list[tuple[str, int]]:
    """``codeexec gc --snapshots-older-than``: remove (or only list) old snapshots."""
    from .snapshot import prune

    return list(prune(older_than, dry_run=dry_run))


def print_pruned(pruned: list[tuple[str, int]], dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for name, size in pruned:
        print(f"{verb} snapshot {name} ({_size(size)})")


def _exit(status: int) -> None:
    if status:
        raise typer.Exit(status)


def register(app: typer.Typer, command: Callable[[str | None], Callable[[Any], Any]]) -> None:
    """Add the snapshot commands to ``app`` (``command`` is cli.py's ``_command``)."""

    @command("snapshot")
    def snapshot(  # noqa: F841 - registered by the decorator
        name: Annotated[str, typer.Argument(metavar="NAME", help="The session to save.")],
        snap: Annotated[
            str | None,
            typer.Argument(metavar="SNAP", help="The snapshot's name [default: NAME-DATE-TIME]."),
        ] = None,
        method: Annotated[str, typer.Option(help=_METHOD)] = "auto",
        stop: Annotated[bool, typer.Option("--stop", help="Stop the session once saved.")] = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Save a whole session (memory and files) to resume later.

        Example: codeexec snapshot default --stop
        """
        from .session import ContainerSession
        from .snapshot import check_method, validate_snapshot_name

        check_method(method)  # bad input: one line, before any docker call
        if snap is not None:
            validate_snapshot_name(snap)
        live = ContainerSession.attach(name)
        saved = live.snapshot(snap, method=method, stop=stop)
        live.close()
        if as_json:
            out.print_json(saved.to_dict())
        else:
            print(f"{saved.name}: {saved.method}, {_size(saved.size)} in {saved.seconds:.2f} s")
        _unsaved(saved.unsaved, "not saved:")

    @command("resume")
    def resume(
        snap: Annotated[str, typer.Argument(metavar="SNAP", help="The snapshot to resume.")],
        name: Annotated[
            str | None,
            typer.Option("--name", help="The new session's name [default: the saved session's]."),
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Start a new session from a snapshot.

        A snapshot resumes as often as wanted: one session forks into many.
        Example: codeexec resume default-20260101-120000 --name copy
        """
        from .session import ContainerSession

        live = ContainerSession.resume(snap, name, on_progress=lambda line: out.note(line))
        live.close()
        if as_json:
            out.print_json(live.info.to_dict())
        else:
            print(f"session {live.name!r} resumed from {snap}")
        _unsaved(live.resume_failures, "not restored:")

    app.add_typer(snapshots_app, name="snapshots")
