"""The ``codeexec`` command: each command maps its arguments onto one core call.

The calls go to ``ContainerSession`` (start, exec, reset, install, and cp through
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
from typing import Annotated, Any, TypeVar

import typer

from . import __version__, _cli_options as opt, _cli_output as out, _cli_snap
from ._cli_argv import normalize, wants_json
from ._cli_copy import cp
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
from .models import ResultLimits
from .options import SessionOptions
from .session import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIFETIME, ContainerSession

app = typer.Typer(
    no_args_is_help=True,
    help="Run Python code in Docker containers whose state persists between runs.",
    epilog=EPILOG,
    pretty_exceptions_show_locals=False,  # locals may hold a session token
    rich_markup_mode=None,  # plain help: exit-status lines stay as written
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _State:
    debug = False


F = TypeVar("F", bound=Callable[..., Any])


def _command(
    name: str | None = None, group: typer.Typer | None = None, **settings: Any
) -> Callable[[F], F]:
    """Register a command behind the one wrapper that turns CodeexecError into exit codes.

    A command returns its exit status (None for 0).
    """

    def register(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            work = functools.partial(func, *args, **kwargs)
            status = guarded(work, debug=_State.debug, as_json=kwargs.get("as_json", False))
            if status:
                raise typer.Exit(status)

        (group or app).command(name, help=opt.help_text(func), **settings)(run)
        return func

    return register


@app.callback()
def _main(
    debug: opt.DebugOpt = False, _version: opt.VersionOpt = False
) -> None:  # both may follow the command too (main: _cli_argv.normalize)
    _State.debug = debug


# -- commands --------------------------------------------------------------------------


@_command(short_help="Start a session, building its image if needed.")
def start(
    name: NameArg = "default",
    dep: opt.DepOpt = None,
    requirements: opt.RequirementsOpt = None,
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
    runtime: opt.RuntimeOpt = None,
    build_timeout: opt.BuildTimeoutOpt = 1800,
    timeout: opt.TimeoutOpt = None,
    output_limit: opt.OutputLimitOpt = None,
    read_only: opt.ReadOnlyOpt = True,
    transport: opt.TransportOpt = "auto",
    env: opt.EnvOpt = None,
    replace: opt.ReplaceOpt = False,
    engine: EngineOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a session (building its image if needed) and print its name.

    Starting a running session again with the same settings just reuses it; other
    settings are refused unless --replace is given.
    Example: codeexec start --dep numpy --memory 2g -e MPLBACKEND=Agg analysis
    """
    options = SessionOptions.of(
        dependencies=dep or [], requirements_file=str(requirements or "") or None,
        base_image=base_image, network=network, memory=memory, cpus=cpus, pids=pids,
        idle_timeout=idle_timeout, max_lifetime=max_lifetime, allow_urls=allow_urls,
        runtime=runtime, build_timeout=build_timeout, timeout=timeout,
        output_limit=output_limit, read_only=read_only, transport=transport,
        env=opt.parse_env(env),
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


@_command("exec", short_help="Run code in a session; its variables persist.")
def exec_(
    code: opt.CodeArg = None,
    file: opt.FileOpt = None,
    session: SessionOpt = "default",
    timeout: opt.ExecTimeoutOpt = None,
    as_json: JsonOpt = False,
    save_dir: opt.SaveDirOpt = None,
    output_limit: opt.ExecOutputLimitOpt = ResultLimits.output,
    display_limit: DisplayLimitOpt = ResultLimits.displays,
    env: opt.ExecEnvOpt = None,
    rollback: opt.RollbackOpt = False,
) -> int:
    """Run code in a session; its variables stay for the next exec.

    Output streams live; then the value of a final expression is printed. A Python
    error prints its traceback on stderr and exits 1. The session "default" is
    started if it is not running (as MCP's execute_code does); other names are not.
    Notebook lines work: `!cmd` runs a shell command, `%pip install NAME` installs;
    `input()` is answered from the terminal when stdin is one.
    Example: echo 'print(6 * 7)' | codeexec exec -s default
    """
    return run_exec(
        read_code(code, file), session, timeout=timeout, as_json=as_json, save_dir=save_dir,
        output_limit=output_limit, display_limit=display_limit, env=opt.parse_env(env),
        rollback=rollback,
    )  # fmt: skip


@_command("ls", short_help="List sessions, their state, idle time and image.")
def ls(
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the names.")] = False,
    template: Annotated[
        str | None,
        typer.Option(
            "--format", metavar="TEMPLATE", help="One line per session: '{name} {status}'."
        ),
    ] = None,
) -> None:
    """List sessions: name, status, dependencies, age, idle time, image, engine, route.

    Example: codeexec ls --format '{name} {status}'  (fields: those of --json)
    """
    run_ls(as_json, quiet=quiet, template=template)


@_command(short_help="Stop sessions and remove their containers.")
def stop(
    names: opt.NamesArg = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every session.")] = False,
    prefix: opt.PrefixOpt = "",
    as_json: JsonOpt = False,
) -> int:
    """Stop sessions: their containers and every variable in them are removed.

    Example: codeexec stop default  (or: codeexec stop --all --prefix test-)
    """
    from . import maintenance

    if bool(names) == all_ or (prefix and not all_):
        raise typer.BadParameter(
            "name sessions to stop, or give --all (with --prefix)",
            param_hint=["NAME...", "--all", "--prefix"],
        )
    report = maintenance.stop_sessions(check_names(names), all=all_, prefix=prefix)
    return out.report_stop(report, all_=all_, as_json=as_json)


@_command(short_help="Show a session container's (executor's) log.")
def logs(
    name: NameArg = "default",
    tail: Annotated[str, typer.Option(metavar="N|all", help="Lines from the end.")] = "200",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a session container's log (the executor's messages, not the code's output).

    Example: codeexec logs -f --tail 0 default  (only the lines from now on)
    """
    from . import maintenance

    if follow and as_json:
        raise typer.BadParameter("give one of them", param_hint=["--follow", "--json"])
    lines = opt.tail_lines(tail)
    log = maintenance.session_logs(name, tail=lines, follow=out.echo_line if follow else None)
    if as_json:
        out.print_json({"name": name, "log": log})
    elif not follow:
        out.echo_line(log)


@_command(short_help="Restart a session's Python process: no variables.")
def reset(name: NameArg = "default", as_json: JsonOpt = False) -> None:
    """Restart a session's Python process: same container and image, no variables.

    `restart` is the same command (its older name); the API calls it reset().
    Example: codeexec reset default
    """
    session = ContainerSession.attach(name)
    session.reset()
    session.close()
    if as_json:
        out.print_json({"name": name, "reset": True})
    else:
        out.note(f"session {name!r} restarted: every variable is gone")


_command("restart", short_help="The same as reset (its older name).")(reset)


@_command(short_help="List the environment images codeexec built.")
def images(as_json: JsonOpt = False) -> None:
    """List the environment images codeexec built (reused for equal dependencies).

    Example: codeexec images --json
    """
    from . import maintenance

    out.report_images(maintenance.list_images(), as_json)


@_command(short_help="Remove old sessions and unused images.")
def gc(
    dry_run: opt.DryRunOpt = False,
    all_images: opt.AllImagesOpt = False,
    idle_for: opt.IdleForOpt = None,
    snapshots_older_than: opt.SnapshotsOlderThanOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove exited, overdue (and, with --idle-for, idle) sessions and unused env images.

    Sessions past their --max-lifetime always go. With --idle-for, a session whose
    executor does not answer counts as idle since it started.

    Without --all-images only untagged (superseded) images go; tagged images are the
    build cache that makes the next start with the same dependencies instant.
    Example: codeexec gc --dry-run --idle-for 3600
    """
    from . import maintenance

    report = maintenance.gc(dry_run=dry_run, all_images=all_images, idle_for=idle_for)
    pruned = None
    if snapshots_older_than is not None:
        pruned = _cli_snap.prune_snapshots(snapshots_older_than, dry_run)
    if as_json:  # one document: the snapshots pruned go in it too
        snaps = {} if pruned is None else {"snapshots": [{"name": n, "size": b} for n, b in pruned]}
        out.print_json({**out.jsonable(report), **snaps})
        return
    out.report_gc(report)
    if pruned is not None:
        _cli_snap.print_pruned(pruned, dry_run)


@_command(short_help="Check that codeexec can run here, with fixes.")
def doctor(as_json: JsonOpt = False) -> int:
    """Check that codeexec can run here, step by step, with a fix for each problem.

    Example: codeexec doctor --json
    """
    from . import maintenance

    with out.progress() as on_progress:
        checks = list(maintenance.doctor(on_progress=on_progress))
    return out.report_checks(checks, as_json=as_json)


@_command(short_help="Install packages into a running session.")
def install(
    packages: Annotated[
        list[str], typer.Argument(metavar="PACKAGE...", help="pip requirements to install.")
    ],
    session: SessionOpt = "default",
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds allowed for pip.")
    ] = 600,
    allow_urls: Annotated[
        bool, typer.Option("--allow-urls", help="Accept URL requirements.")
    ] = False,
    as_json: JsonOpt = False,
) -> int:
    """Install packages into a running session; they import without a restart.

    Example: codeexec install -s default 'pandas>=2' requests
    """
    live = ContainerSession.attach(session)
    shown = None if as_json else out.echo_stream
    result = live.install(packages, timeout=timeout, on_output=shown, allow_urls=allow_urls)
    live.close()
    return out.report_install(result, as_json=as_json)


@_command()
def version(as_json: JsonOpt = False) -> None:
    """Print codeexec's version (also: codeexec --version).

    Example: codeexec version --json
    """
    if as_json:
        out.print_json({"version": __version__})
    else:
        print(f"codeexec {__version__}")


_command("mcp", short_help="Serve the MCP tools over stdio or HTTP.")(serve_mcp)
_cli_snap.register(app, _command)
for _name, _func in STATE_COMMANDS:
    _command(_name)(_func)
_command("base-image")(base_image)
_command("sh", short_help="Run a program in a session, passing its exit status.")(sh)
_command("cp", short_help="Copy files or directories between the host and a session.")(cp)
for _name, _func in FILES_COMMANDS:
    _command(_name, files_app)(_func)
app.add_typer(files_app, name="files")


def main() -> None:
    """Entry point of the ``codeexec`` console script (global options go anywhere).

    With ``--json`` a usage error, too, is one JSON document on stdout.
    """
    args = normalize(sys.argv[1:])
    if not wants_json(args):
        app(args=args, prog_name="codeexec")
        return
    try:
        status = app(args=args, prog_name="codeexec", standalone_mode=False)
    except Exception as exc:  # Click's UsageError: Typer vendors Click, so no import of it
        if not hasattr(exc, "format_message"):
            raise
        exc.show()  # type: ignore[attr-defined]
        code = int(getattr(exc, "exit_code", out.EXIT_USAGE))
        out.print_json(out.error_document("UsageError", exc.format_message(), code))
        sys.exit(code)
    sys.exit(status or 0)
