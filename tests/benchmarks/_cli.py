"""The CLI lane: `codeexec exec` against `docker exec`, and `codeexec ls` over 20 sessions.

Each figure is measured interleaved in one loop (one sample of each per round), so
the load of a shared machine falls on all of them alike. `codeexec --debug exec`
takes the full Typer path (the fast path leaves --debug to Typer): the same work,
so the pair shows what the fast path saves in the same run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from codeexec import ContainerSession

from . import _util as u

LS_SESSIONS = 20


def _run(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    took = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[1:3]} failed: {proc.stderr.strip()[-300:]}")
    return took


def _interleaved(commands: dict[str, list[str]], rounds: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {key: [] for key in commands}
    for argv in commands.values():
        _run(argv)  # warm-up: page cache, bytecode
    for _ in range(rounds):
        for key, argv in commands.items():
            samples[key].append(_run(argv))
    return {key: u.summary(s) for key, s in samples.items()}


def exec_vs_docker(exe: Path, session: str, container: str, rounds: int) -> dict[str, Any]:
    """`codeexec exec` (fast path and Typer path) and `docker exec`, interleaved."""
    return _interleaved(
        {
            "cli_exec_ms": [str(exe), "exec", "-s", session, "pass"],
            "cli_exec_typer_ms": [str(exe), "--debug", "exec", "-s", session, "pass"],
            "cli_docker_exec_ms": [u.DOCKER, "exec", container, "python3", "-c", "pass"],
            "cli_import_ms": [sys.executable, "-c", "import codeexec.cli"],
            "cli_import_fast_ms": [sys.executable, "-c", "import codeexec._cli_fast"],
            "python_startup_ms": [sys.executable, "-c", "pass"],
        },
        rounds,
    )


def ls_many(exe: Path, name: Callable[[str], str], idle: float, rounds: int) -> dict[str, Any]:
    """`codeexec ls` with LS_SESSIONS running sessions (plus whatever else runs here)."""
    names = [name(f"ls{i:02d}") for i in range(LS_SESSIONS)]
    with ThreadPoolExecutor(4) as starts:
        sessions = list(starts.map(lambda n: ContainerSession.start(n, idle_timeout=idle), names))
    try:
        listed = subprocess.run([str(exe), "ls"], capture_output=True, text=True, timeout=120)
        shown = sum(n in listed.stdout for n in names)
        if shown != LS_SESSIONS:
            raise RuntimeError(f"codeexec ls showed {shown} of {LS_SESSIONS} sessions")
        commands = {
            "cli_ls20_ms": [str(exe), "ls"],
            "cli_ls20_typer_ms": [str(exe), "--debug", "ls"],
            "cli_docker_ps_ms": [u.DOCKER, "ps", "--all", "--filter", "label=codeexec.managed=1"],
        }
        return {
            **_interleaved(commands, rounds),
            "cli_ls_sessions": listed.stdout.count("\n") - 1,  # every session on the engine
        }
    finally:
        with ThreadPoolExecutor(4) as stops:
            list(stops.map(lambda s: s.stop(), sessions))


def targets(get: Callable[..., float | None]) -> list[tuple[str, str, bool]]:
    """(target, measured with ratio, met) for run.py's target list."""
    rows = []
    cli, dexec, typer = (
        get(k, "p50") for k in ("cli_exec_ms", "cli_docker_exec_ms", "cli_exec_typer_ms")
    )
    if cli and dexec:
        rows.append(
            (
                "codeexec exec p50 < docker exec p50 (same run)",
                f"{cli:.1f} ms vs {dexec:.1f} ms = {cli / dexec:.2f}x"
                + (f" (Typer path {typer:.1f} ms)" if typer else ""),
                cli < dexec,
            )
        )
    ls, ls_typer, listed = (
        get("cli_ls20_ms", "p50"),
        get("cli_ls20_typer_ms", "p50"),
        get("cli_ls_sessions"),
    )
    if ls:
        rows.append(
            (
                f"codeexec ls with {LS_SESSIONS} sessions < 300 ms (p50)",
                f"{ls:.0f} ms = {ls / 300:.2f}x of the target ({listed or 0:.0f} listed"
                + (f"; Typer path {ls_typer:.0f} ms)" if ls_typer else ")"),
                ls < 300,
            )
        )
    return rows
