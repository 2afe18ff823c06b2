"""The ``codeexec`` command: each command maps its arguments onto one core call.

The calls go to ``ContainerSession`` (start, exec, restart, install, and cp through
``_cli_copy``, which parses its ``SESSION:PATH`` arguments) and to ``maintenance``
(ls, stop, logs, images, gc, doctor); ``_cli_output`` formats what they return and
picks the exit status; ``_cli_options`` holds the arguments several commands share.
Nothing here runs docker or opens a socket. ``maintenance``, Rich and the MCP
server load only in the commands that use them, so ``codeexec exec`` stays quick.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from . import __version__, _cli_output as out, _cli_snap
from ._cli_files import FILES_COMMANDS, files_app
from ._cli_image import base_image
from ._cli_mcp import serve_mcp
from ._cli_options import (
    BaseImageOpt,
    CpusOpt,
    DisplayLimitOpt,
    EngineOpt,
    IdleTimeoutOpt,
    JsonOpt,
    MaxLifetimeOpt,
    MemoryOpt,
    NameArg,
    NetworkOpt,
    SessionOpt,
    check_names,
    read_code,
)
from ._cli_output import EPILOG
from ._cli_run import guarded, run_exec, run_ls
from ._cli_sh import sh
from ._cli_state import COMMANDS as STATE_COMMANDS
from .errors import CodeexecError
from .models import ResultLimits
from .options import SessionOptions
from .session import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIFETIME, ContainerSession

app = typer.Typer(
    no_args_is_help=True,
    help="Run Python code in Docker containers whose state persists between runs.",
    epilog=EPILOG,
    pretty_exceptions_show_locals=False,  # locals may hold a session token
    rich_markup_mode=None,  # plain help: exit-status lines stay as written
)


class _State:
    debug = False


F = TypeVar("F", bound=Callable[..., Any])


def _command(name: str | None = None, group: typer.Typer | None = None) -> Callable[[F], F]:
    """Register a command behind the one wrapper that turns CodeexecError into exit codes.

    A command returns its exit status (None for 0).
    """

    def register(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            status = guarded(lambda: func(*args, **kwargs), debug=_State.debug)
            if status:
                raise typer.Exit(status)

        (group or app).command(name)(run)
        return func

    return register


@app.callback()
def _main(
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="CODEEXEC_DEBUG", help="Show Python tracebacks of errors."),
    ] = False,
) -> None:
    _State.debug = debug


# -- commands --------------------------------------------------------------------------


@_command()
def start(
    name: NameArg = "default",
    dep: Annotated[
        list[str] | None,
        typer.Option(
            "--dep",
            "-d",
            metavar="REQUIREMENT",
            help="A pip requirement such as 'numpy==2.*' (repeatable).",
        ),
    ] = None,
    requirements: Annotated[
        Path | None,
        typer.Option(
            "--requirements", "-r", metavar="FILE", help="A requirements.txt file.", dir_okay=False
        ),
    ] = None,
    base_image: BaseImageOpt = None,
    memory: MemoryOpt = "1g",
    cpus: CpusOpt = 1.0,
    pids: Annotated[int, typer.Option(metavar="N", help="Process-count limit.")] = 256,
    network: NetworkOpt = "bridge",
    idle_timeout: IdleTimeoutOpt = DEFAULT_IDLE_TIMEOUT,
    max_lifetime: MaxLifetimeOpt = DEFAULT_MAX_LIFETIME,
    allow_urls: Annotated[
        bool, typer.Option("--allow-urls", help="Accept URL requirements (pkg @ https://…).")
    ] = False,
    runtime: Annotated[
        str | None, typer.Option(metavar="RUNTIME", help="Docker runtime, e.g. runsc.")
    ] = None,
    build_timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds allowed for the build.")
    ] = 1800,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Replace a running session of that name whose settings differ."
        ),
    ] = False,
    engine: EngineOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a session (building its image if needed) and print its name.

    Starting a running session again with the same settings just reuses it; other
    settings are refused unless --replace is given.
    """
    options = SessionOptions.of(
        dependencies=dep or [], requirements_file=str(requirements or "") or None,
        base_image=base_image, network=network, memory=memory, cpus=cpus, pids=pids,
        idle_timeout=idle_timeout, max_lifetime=max_lifetime, allow_urls=allow_urls,
        runtime=runtime, build_timeout=build_timeout,
    )  # fmt: skip
    with out.progress() as on_progress:
        session = ContainerSession.start(
            name, options, replace=replace, on_progress=on_progress, engine=engine
        )
    session.close()
    if as_json:
        out.print_json(session.info.to_dict())
    else:
        print(session.name)


@_command("exec")
def exec_(
    code: Annotated[
        str | None,
        typer.Argument(
            metavar="CODE",
            help="Python code to run; '-' reads it from stdin.",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", metavar="FILE", help="Run the code in this file.", dir_okay=False
        ),
    ] = None,
    session: SessionOpt = "default",
    timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Seconds before the code is interrupted (exit 124) [default: no limit].",
        ),
    ] = None,
    as_json: JsonOpt = False,
    save_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Where to save plots and other rich outputs [default: a new temp dir].",
            file_okay=False,
        ),
    ] = None,
    output_limit: Annotated[
        int,
        typer.Option(
            metavar="BYTES", min=0, help="Bytes of stdout+stderr kept; the rest is dropped."
        ),
    ] = ResultLimits.output,
    display_limit: DisplayLimitOpt = ResultLimits.displays,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="If the code fails, undo what it changed.")
    ] = False,
) -> int:
    """Run code in a session; its variables stay for the next exec.

    Output streams live; then the value of a final expression is printed. A Python
    error prints its traceback on stderr and exits 1. Notebook lines work: `!cmd`
    runs a shell command, `%pip install NAME` installs; `input()` is answered from
    the terminal when stdin is one.
    """
    return run_exec(
        read_code(code, file), session, timeout=timeout, as_json=as_json, save_dir=save_dir,
        output_limit=output_limit, display_limit=display_limit, rollback=rollback,
    )  # fmt: skip


@_command("ls")
def ls(as_json: JsonOpt = False) -> None:
    """List sessions: name, status, dependencies, age, idle time, image, engine, route."""
    run_ls(as_json)


@_command()
def stop(
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="NAME", help="Sessions to stop.", show_default=False),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every session.")] = False,
    prefix: Annotated[
        str,
        typer.Option(
            metavar="PREFIX", help="With --all: only sessions whose name starts with this."
        ),
    ] = "",
) -> int:
    """Stop sessions: their containers and every variable in them are removed."""
    from . import maintenance

    if bool(names) == all_ or (prefix and not all_):
        raise typer.BadParameter("name sessions to stop, or give --all (with --prefix)")
    report = maintenance.stop_sessions(check_names(names), all=all_, prefix=prefix)
    return out.report_stop(report, all_=all_)


@_command()
def logs(
    name: NameArg = "default",
    tail: Annotated[
        int, typer.Option(metavar="N", help="Lines from the end; 0 for all (at most 4 MiB).")
    ] = 200,
) -> None:
    """Show a session container's log (the executor's messages, not the code's output)."""
    from . import maintenance

    log = maintenance.session_logs(name, tail=tail or None)
    sys.stdout.write(out.for_terminal(log, sys.stdout))


@_command()
def restart(name: NameArg = "default") -> None:
    """Restart a session's Python process: same container and image, no variables."""
    session = ContainerSession.attach(name)
    session.reset()
    session.close()
    out.note(f"session {name!r} restarted: every variable is gone")


@_command()
def images(as_json: JsonOpt = False) -> None:
    """List the environment images codeexec built (reused for equal dependencies)."""
    from . import maintenance

    out.report_images(maintenance.list_images(), as_json)


@_command()
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
    all_images: Annotated[
        bool,
        typer.Option(
            "--all-images", help="Also remove unused tagged images and the package cache volume."
        ),
    ] = False,
    idle_for: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="Also stop running sessions idle for at least this long."
        ),
    ] = None,
    snapshots_older_than: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Also remove snapshots this old (0: all)."),
    ] = None,
) -> None:
    """Remove exited, overdue (and, with --idle-for, idle) sessions and unused env images.

    Sessions past their --max-lifetime always go. With --idle-for, a session whose
    executor does not answer counts as idle since it started.

    Without --all-images only untagged (superseded) images go; tagged images are the
    build cache that makes the next start with the same dependencies instant.
    """
    from . import maintenance

    out.report_gc(maintenance.gc(dry_run=dry_run, all_images=all_images, idle_for=idle_for))
    if snapshots_older_than is not None:
        _cli_snap.report_pruned(snapshots_older_than, dry_run)


@_command()
def doctor() -> int:
    """Check that codeexec can run here, step by step, with a fix for each problem."""
    from . import maintenance

    with out.progress() as on_progress:
        checks = list(maintenance.doctor(on_progress=on_progress))
    return out.report_checks(checks)


@_command()
def cp(
    src: Annotated[str, typer.Argument(metavar="SRC", help="Source: a host path or SESSION:PATH.")],
    dst: Annotated[
        str, typer.Argument(metavar="DST", help="Destination: a host path or SESSION:PATH.")
    ],
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Copy a directory and its contents.")
    ] = False,
) -> None:
    """Copy a file (or with -r a directory) between the host and a session.

    Relative paths in a session are in /workspace. A DST that ends with / (or is an
    existing host directory) receives SRC under its own name, like cp.
    """
    from ._cli_copy import copy, plan_copy, remote_display

    try:
        plan = plan_copy(src, dst, recursive=recursive)
    except (ValueError, CodeexecError) as exc:
        raise typer.BadParameter(str(exc)) from None
    out.report_copy(copy(plan), remote_display(plan))


@_command()
def install(
    packages: Annotated[
        list[str], typer.Argument(metavar="PACKAGE", help="pip requirements to install.")
    ],
    session: SessionOpt = "default",
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds allowed for pip.")
    ] = 600,
    allow_urls: Annotated[
        bool, typer.Option("--allow-urls", help="Accept URL requirements.")
    ] = False,
) -> int:
    """Install packages into a running session; they import without a restart."""
    live = ContainerSession.attach(session)
    result = live.install(
        packages, timeout=timeout, on_output=out.echo_stream, allow_urls=allow_urls
    )
    live.close()
    return out.report_install(result)


@_command()
def version() -> None:
    """Print codeexec's version."""
    print(f"codeexec {__version__}")


_command("mcp")(serve_mcp)
_cli_snap.register(app, _command)
for _name, _func in STATE_COMMANDS:
    _command(_name)(_func)
_command("base-image")(base_image)
_command("sh")(sh)
for _name, _func in FILES_COMMANDS:
    _command(_name, files_app)(_func)
app.add_typer(files_app, name="files")


def main() -> None:
    """Entry point of the ``codeexec`` console script."""
    app()
