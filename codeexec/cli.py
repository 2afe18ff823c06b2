"""The ``codeexec`` command: maps arguments onto ContainerSession and formats results.

Results go to stdout (``--json`` gives exactly one JSON document); progress, notes
and errors go to stderr (formatting lives in ``_cli_output``). Commands import what
they need inside their body, so ``codeexec exec`` stays quick.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from . import __version__, _cli_output as out
from ._cli_mcp import serve_mcp
from .errors import CodeexecError, ContainerStartError, ImageBuildError, InvalidOption
from .models import ResultLimits
from .options import SessionOptions
from .session import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_LIFETIME,
    ContainerSession,
    list_sessions,
    validate_name,
)

EXIT_OK, EXIT_RAISED, EXIT_USAGE, EXIT_TROUBLE = 0, 1, 2, 3
EXIT_TIMEOUT, EXIT_INTERRUPTED = 124, 130
_EXIT_BY_STATUS = {
    "ok": EXIT_OK,
    "error": EXIT_RAISED,
    "timeout": EXIT_TIMEOUT,
    "interrupted": EXIT_INTERRUPTED,
}

EPILOG = """\
Exit status: 0 ok; 1 the code raised (or pip failed); 2 usage error (bad option,
bad dependency); 3 Docker or session trouble (engine unreachable, session not
found, build failed); 124 the code timed out; 130 interrupted (Ctrl-C).

Set CODEEXEC_DEBUG=1 or pass --debug to see Python tracebacks.
"""

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


def _command(name: str | None = None) -> Callable[[F], F]:
    """Register a command behind the one wrapper that turns CodeexecError into exit codes."""

    def register(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except CodeexecError as exc:
                _fail(exc)
            except KeyboardInterrupt:
                out.note("interrupted")
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except BrokenPipeError:  # `codeexec exec … | head`: the reader left
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(EXIT_RAISED) from None

        app.command(name)(run)
        return func

    return register


def _fail(exc: CodeexecError) -> NoReturn:
    if _State.debug:
        traceback.print_exc()
    out.note("error: " + " ".join(out.plain(exc.message).split()), style="red")  # one line
    extra = out.plain(getattr(exc, "log_tail", "") or getattr(exc, "container_log", ""))
    if isinstance(exc, ImageBuildError) and out.State.log_shown:
        extra = ""
        out.note("(the build log is above)")
    if extra and isinstance(exc, (ImageBuildError, ContainerStartError)):
        label = "build log" if isinstance(exc, ImageBuildError) else "container log"
        out.note(f"--- end of the {label} ---\n{extra.rstrip()}\n---")
    raise typer.Exit(EXIT_USAGE if isinstance(exc, InvalidOption) else EXIT_TROUBLE)


def _read_code(code: str | None, file: Path | None) -> str:
    if (code is None) == (file is None):
        raise typer.BadParameter("give CODE (or `-` to read stdin) or --file, not both")
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc.strerror}") from None
    return sys.stdin.read() if code == "-" else str(code)


def _check_name(value: str) -> str:
    try:
        return validate_name(value)
    except CodeexecError as exc:
        raise typer.BadParameter(exc.message) from None


def _check_names(values: list[str] | None) -> list[str]:
    return [_check_name(v) for v in values or []]


def _exit(status: int) -> None:
    if status:
        raise typer.Exit(status)


# -- parameters shared by several commands ---------------------------------------------

SessionOpt = Annotated[
    str, typer.Option("--session", "-s", callback=_check_name, metavar="NAME", help="Session name.")
]
NameArg = Annotated[str, typer.Argument(callback=_check_name, metavar="NAME", help="Session name.")]
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
    base_image: Annotated[
        str | None,
        typer.Option(
            metavar="IMAGE",
            help="Image to build on [default: $CODEEXEC_BASE_IMAGE or python:3.12-slim].",
        ),
    ] = None,
    memory: Annotated[
        str, typer.Option(metavar="SIZE", help="Memory limit, e.g. 512m, 2g.")
    ] = "1g",
    cpus: Annotated[float, typer.Option(metavar="N", help="CPU limit.")] = 1.0,
    pids: Annotated[int, typer.Option(metavar="N", help="Process-count limit.")] = 256,
    network: Annotated[
        str,
        typer.Option(
            metavar="NETWORK", help="Docker network; 'none' cuts it off ('host' is refused)."
        ),
    ] = "bridge",
    idle_timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Seconds without activity before the session removes itself; 0 = never.",
        ),
    ] = DEFAULT_IDLE_TIMEOUT,
    max_lifetime: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            min=0,
            help="Seconds after its start when the session removes itself even if busy; "
            "0 = no limit.",
        ),
    ] = DEFAULT_MAX_LIFETIME,
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
        session = ContainerSession.start(name, options, replace=replace, on_progress=on_progress)
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
) -> None:
    """Run code in a session; its variables stay for the next exec.

    Output streams live; then the value of a final expression is printed. A Python
    error prints its traceback on stderr and exits 1.
    """
    source = _read_code(code, file)
    live = ContainerSession.attach(session)
    limits = ResultLimits(output=output_limit, displays=display_limit)
    with out.ctrl_c_interrupts(live):
        result = live.execute(
            source,
            timeout=timeout,
            on_output=None if as_json else out.echo_stream,
            result_limits=limits,
        )
    live.close()
    if as_json:
        out.print_json(result.to_dict())
        if save_dir is not None:
            out.save_displays(result, save_dir)
    else:
        out.report_exec(result, timeout, save_dir)
    _exit(_EXIT_BY_STATUS[result.status])


@_command("ls")
def ls(as_json: JsonOpt = False) -> None:
    """List sessions: name, status, dependencies, age / max lifetime, idle / timeout, image."""
    from .maintenance import idle_times

    sessions = list_sessions()
    idle = idle_times(sessions)
    if as_json:
        out.print_json([{**s.to_dict(), "idle_seconds": idle[s.name]} for s in sessions])
    elif not sessions:
        out.note("no sessions; start one with `codeexec start`")
    else:
        out.table(
            ["NAME", "STATUS", "DEPENDENCIES", "AGE / LIFETIME", "IDLE / TIMEOUT", "IMAGE"],
            [out.session_row(s, idle[s.name]) for s in sessions],
        )


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
) -> None:
    """Stop sessions: their containers and every variable in them are removed."""
    from .maintenance import stop_sessions

    if bool(names) == all_ or (prefix and not all_):
        raise typer.BadParameter("name sessions to stop, or give --all (with --prefix)")
    report = stop_sessions(_check_names(names), all=all_, prefix=prefix)
    for name in report.stopped:
        print(name)
    for name in report.missing:
        out.note(f"error: no session named {name!r}; `codeexec ls` lists them", "red")
    if all_ and not report.stopped:
        out.note("no sessions to stop")
    _exit(EXIT_TROUBLE if report.missing else EXIT_OK)


@_command()
def logs(
    name: NameArg = "default",
    tail: Annotated[
        int, typer.Option(metavar="N", help="Lines from the end; 0 for all (at most 4 MiB).")
    ] = 200,
) -> None:
    """Show a session container's log (the executor's messages, not the code's output)."""
    from .docker import Docker
    from .maintenance import find_session

    docker = Docker()
    info = find_session(name, docker=docker)
    sys.stdout.write(
        out.for_terminal(docker.logs(info.container_id, tail=tail or None), sys.stdout)
    )


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
    from .maintenance import list_images

    found = list_images()
    if as_json:
        out.print_json([i.to_dict() for i in found])
    elif not found:
        out.note("no codeexec images yet")
    else:
        out.table(["IMAGE", "DEPENDENCIES", "BASE", "CREATED", "SIZE"], map(out.image_row, found))


@_command()
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
    all_images: Annotated[
        bool,
        typer.Option("--all-images", help="Also remove unused tagged images (the build cache)."),
    ] = False,
    idle_for: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="Also stop running sessions idle for at least this long."
        ),
    ] = None,
) -> None:
    """Remove exited, overdue (and, with --idle-for, idle) sessions and unused env images.

    Sessions past their --max-lifetime always go. With --idle-for, a session whose
    executor does not answer counts as idle since it started.

    Without --all-images only untagged (superseded) images go; tagged images are the
    build cache that makes the next start with the same dependencies instant.
    """
    from .maintenance import gc as collect

    report = collect(dry_run=dry_run, all_images=all_images, idle_for=idle_for)
    verb = "would remove" if dry_run else "removed"
    for c in report.containers:
        print(f"{verb} container {c.container_name} (session {c.name}, {c.status})")
    for i in report.images:
        print(f"{verb} image {i.tag} ({i.image_id[:19]})")
    for line in report.failed:
        out.note(f"could not remove {line}", "yellow")
    if report.kept_images:
        out.note(
            f"kept {len(report.kept_images)} unused cached image(s); --all-images removes them"
        )


@_command()
def doctor() -> None:
    """Check that codeexec can run here, step by step, with a fix for each problem."""
    from .maintenance import doctor as run_checks

    with out.progress() as on_progress:
        checks = list(run_checks(on_progress=on_progress))
    for check in checks:
        out.note(
            f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}",
            "green" if check.ok else "red",
        )
        if check.fix:
            out.note(f"     fix: {check.fix}")
    _exit(EXIT_OK if all(c.ok for c in checks) else EXIT_TROUBLE)


@_command()
def cp(
    src: Annotated[str, typer.Argument(metavar="SRC", help="Source: a host path or SESSION:PATH.")],
    dst: Annotated[
        str, typer.Argument(metavar="DST", help="Destination: a host path or SESSION:PATH.")
    ],
) -> None:
    """Copy one file between the host and a session (relative paths are in /workspace)."""
    from .maintenance import copy, plan_copy, remote_display

    try:
        plan = plan_copy(src, dst)
    except (ValueError, CodeexecError) as exc:
        raise typer.BadParameter(str(exc)) from None
    done = copy(plan)
    remote, local = remote_display(plan), done.local_path
    arrow = f"{local} -> {remote}" if plan.direction == "upload" else f"{remote} -> {local}"
    out.note(f"copied {done.size} bytes: {arrow}")


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
) -> None:
    """Install packages into a running session; they import without a restart."""
    live = ContainerSession.attach(session)
    result = live.install(
        packages, timeout=timeout, on_output=out.echo_stream, allow_urls=allow_urls
    )
    live.close()
    if result.error is not None:
        out.note(result.error.format(), "red")
    _exit(_EXIT_BY_STATUS[result.status])


@_command()
def version() -> None:
    """Print codeexec's version."""
    print(f"codeexec {__version__}")


_command("mcp")(serve_mcp)


def main() -> None:
    """Entry point of the ``codeexec`` console script."""
    app()
