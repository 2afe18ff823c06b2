"""The docker arguments of whole-session snapshots, and which method an engine allows.

Pure (no process, no file): ``_snapverbs.py`` runs these argument lists through
``Docker._run`` and ``snapshot.py`` decides with ``choose_method``. Tested with
exact argument lists in tests/test_snapshot_args.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ._dockerargs import RunSpec, run_argv

Method = Literal["checkpoint", "portable"]
METHODS: tuple[Method, ...] = ("checkpoint", "portable")
CHECKPOINT_NAME = "session"  # the one checkpoint in a snapshot's directory
CHECKPOINT_RUNTIME = "runsc-ckpt"  # what scripts/engine_runtimes.py adds to daemon.json
# gVisor cannot checkpoint a sandbox that uses the host's network stack.
_HOSTINET = "--network=host"


def create_argv(spec: RunSpec) -> list[str]:
    """``docker create`` for a container that a checkpoint will be restored into.

    The same arguments as the session's ``docker run`` (secure defaults, labels,
    limits, tmpfs mounts), only created, not started: ``start_checkpoint_argv``
    starts it with the saved process instead of a fresh executor.
    """
    argv = run_argv(spec)
    assert argv[:2] == ["run", "--detach"]
    return ["create", *argv[2:]]


def checkpoint_argv(container: str, directory: str, *, leave_running: bool = False) -> list[str]:
    """``docker checkpoint create`` into ``directory`` (the engine writes it).

    The container stops: with gVisor 20221219 ``--leave-running`` panics
    ("invalid state transition: paused => stopped") and kills the container.
    """
    argv = ["checkpoint", "create"]
    if leave_running:
        argv.append("--leave-running")
    return [*argv, "--checkpoint-dir", directory, container, CHECKPOINT_NAME]


def start_checkpoint_argv(container: str) -> list[str]:
    """``docker start --checkpoint``: the container resumes the saved process."""
    return ["start", "--checkpoint", CHECKPOINT_NAME, container]


def exec_argv(container: str, command: Sequence[str], *, stdin: bool = False) -> list[str]:
    """``docker exec`` with the token blanked in the exec'd process's environment."""
    return ["exec", *(["-i"] if stdin else []), "--env", "CODEEXEC_TOKEN=", container, *command]


def tar_out_argv(container: str, directory: str) -> list[str]:
    return exec_argv(container, ["tar", "-C", directory, "-cf", "-", "."])


def tar_in_argv(container: str, directory: str) -> list[str]:
    return exec_argv(container, ["tar", "-C", directory, "-xf", "-"], stdin=True)


def cat_argv(container: str, path: str) -> list[str]:
    return exec_argv(container, ["cat", path])


def write_argv(container: str, path: str) -> list[str]:
    return exec_argv(container, ["dd", f"of={path}", "bs=1M", "status=none"], stdin=True)


def info_argv() -> list[str]:
    return ["info", "--format", "{{json .}}"]


def engine_facts(info: Mapping[str, Any]) -> dict[str, Any]:
    """What snapshots need of ``docker info``: experimental, runtimes, the data root."""
    runtimes = info.get("Runtimes") or {}
    return {
        "experimental": bool(info.get("ExperimentalBuild")),
        "runtimes": {str(k): dict(v or {}) for k, v in runtimes.items()},
        "root": str(info.get("DockerRootDir") or ""),
        "os": str(info.get("OperatingSystem") or ""),
    }


def checkpointable_runtimes(facts: Mapping[str, Any]) -> list[str]:
    """The engine's gVisor runtimes that can be checkpointed (not host networking)."""
    found = []
    for name, spec in sorted(facts.get("runtimes", {}).items()):
        path = os.path.basename(str(spec.get("path") or ""))
        args = [str(a) for a in spec.get("runtimeArgs") or []]
        if path == "runsc" and _HOSTINET not in args:
            found.append(name)
    return found


def choose_method(facts: Mapping[str, Any], runtime: str | None) -> tuple[Method, str]:
    """The snapshot method for a session on ``runtime``, and why (one sentence)."""
    if not facts.get("experimental"):
        return "portable", (
            "the engine runs without experimental features, so it cannot checkpoint "
            'processes (set "experimental": true in daemon.json and restart dockerd)'
        )
    usable = checkpointable_runtimes(facts)
    if runtime in usable:
        return "checkpoint", f"the session runs under gVisor ({runtime}), which checkpoints"
    hint = (
        f"start the session with runtime={usable[0]!r} (`--runtime {usable[0]}`)"
        if usable
        else f"add the gVisor runtime {CHECKPOINT_RUNTIME!r} (runsc --network=none) to "
        "daemon.json: scripts/engine_runtimes.py, then SIGHUP dockerd"
    )
    return "portable", (
        f"the session's runtime ({runtime or 'runc'}) cannot be checkpointed on this "
        f"engine; for the checkpoint method {hint}"
    )
