"""Whole-session snapshots: save a session so that it can be stopped and resumed later.

Two methods, chosen per session (``_snapargs.choose_method``) and reported:

- ``"checkpoint"``: the engine checkpoints the whole gVisor sandbox (every
  process, thread, object, /tmp and /workspace: they are tmpfs inside it) with
  ``docker checkpoint create --checkpoint-dir``; a resume creates a container from
  the same image and starts it from that checkpoint. Docker 20.10 refuses
  ``docker start --checkpoint-dir`` ("custom checkpointdir is not supported"), so
  the checkpoint is linked (or copied) into the new container's own checkpoint
  directory under the engine's data root: the method needs a local engine whose
  data root this process may write (root on the engine's host).
- ``"portable"``: /workspace as a tar and the namespace pickled name by name
  (executor_image/codeexec_executor/namespace_io.py); a resume starts a fresh
  session from the same settings (same image, same dependencies) and loads both.

docs/snapshots.md explains what each keeps and loses.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _addrcache, _snapstore
from ._channel import Channel, Connect
from ._dockerargs import session_run_spec
from ._shared import constants
from ._snapargs import (
    CHECKPOINT_NAME,
    cat_argv,
    checkpointable_runtimes,
    choose_method,
    tar_in_argv,
    tar_out_argv,
    write_argv,
)
from ._snapstore import Snapshot, list_snapshots, prune, remove, snapshot_root
from .docker import Docker
from .errors import CodeexecError, DockerError, SessionExists, SnapshotError, register_secret
from .models import Limits, ResultLimits, SessionRef, Transport
from .options import SessionOptions, validate_name

if TYPE_CHECKING:
    from .session import ContainerSession

__all__ = ["Snapshot", "list_snapshots", "prune", "remove", "snapshot_root"]
validate_snapshot_name = _snapstore.validate_snapshot_name
_S = TypeVar("_S", bound="ContainerSession")
PICKLE = "/tmp/.codeexec-snapshot.pickle"
QUIESCE_SECONDS = 30.0  # the executor listens again by then even without SIGUSR1
_STREAM_TIMEOUT = 1800.0
_CALL = '__import__("codeexec_executor.namespace_io", fromlist=["x"]).{}(globals(), {!r})'


def check_method(method: str) -> str:
    if method not in ("auto", "checkpoint", "portable"):
        raise SnapshotError(f"method {method!r} is not one of auto, checkpoint, portable")
    return method


def doctor_check(docker: Docker) -> tuple[str, str]:
    """What ``codeexec doctor`` says of snapshots here: the detail, and how to do better."""
    facts = docker.engine_facts()
    usable = checkpointable_runtimes(facts)
    if facts["experimental"] and usable:
        return (f"tier 1 (in-session checkpoints): yes; tier 2 snapshots: checkpoint method "
                f"for sessions on runtime {usable[0]!r} (e.g. `codeexec start --runtime "
                f"{usable[0]} --network none`), portable method for the others", "")  # fmt: skip
    why = choose_method(facts, None)[1]
    fix = (
        'set "experimental": true in daemon.json and restart dockerd (a SIGHUP reloads '
        "runtimes, not experimental)"
        if not facts["experimental"]
        else "run scripts/engine_runtimes.py (`make engine` does, as root) to add the gVisor "
        "runtime runsc-ckpt (apt-get install runsc), then SIGHUP dockerd"
    )
    return f"tier 1: yes; tier 2 snapshots: portable method only ({why})", fix


def take(
    session: ContainerSession, name: str | None = None, *, method: str = "auto",
    stop: bool = False, docker: Docker,
) -> Snapshot:  # fmt: skip
    """``ContainerSession.snapshot`` (see there)."""
    name = _snapstore.validate_snapshot_name(
        name or f"{session.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    check_method(method)
    if (snapshot_root() / name).exists():
        raise SnapshotError(f"a snapshot named {name!r} exists already: remove it first "
                            f"(`codeexec snapshots rm {name}`) or choose another name")  # fmt: skip
    ref = session._channel.ref
    runtime = ref.settings.get("runtime")
    facts = docker.engine_facts()
    chosen, why = choose_method(facts, runtime)
    if chosen == "checkpoint" and not os.access(_containers_dir(facts), os.W_OK):
        # Checked first: the checkpoint stops the source, and without this access
        # it could not be restored (the session would be gone).
        chosen, why = (
            "portable",
            (
                f"a checkpoint is restored by writing into the engine's data root "
                f"({_containers_dir(facts)}), which this process may not write (run as root "
                "on the engine's host)"
            ),
        )
    if method == "checkpoint" and chosen != "checkpoint":
        raise SnapshotError(f"cannot take a checkpoint snapshot: {why}")
    chosen = "portable" if method == "portable" else chosen
    started = time.monotonic()
    stage = _snapstore.staging(name)
    try:
        meta: dict[str, Any] = {
            "method": chosen, "session": session.name, "created": time.time(),
            "image": session.info.image, "image_id": docker.image_id(session.info.image),
            "settings": dict(ref.settings), "labels": _scope_labels(ref.labels),
            "protocol": constants.PROTOCOL_VERSION, "why": why,
        }  # fmt: skip
        if chosen == "checkpoint":
            meta["token"] = ref.token
            _checkpoint(session, docker, stage)
        else:
            meta["unsaved"] = _portable_save(session, docker, stage)
        meta["seconds"] = time.monotonic() - started
        snap = _snapstore.publish(stage, name, meta)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if stop:
        session.stop()
    elif chosen == "checkpoint":  # the checkpoint stopped the container: resume it here
        try:
            options = _options(meta, session.transport)
            ref, channel = _restore_container(snap, meta, session.name, options, docker, None, 60.0)
        except CodeexecError as exc:
            session._stopped = True
            raise SnapshotError(
                f"snapshot {name!r} is saved, but session {session.name!r} could not continue "
                f"({exc}); resume it with `codeexec resume {name}`"
            ) from exc
        session._rebind(ref, channel)
    return snap


def resume(
    cls: type[_S], snapshot: Snapshot | str, name: str | None = None, *, docker: Docker,
    transport: Transport = "auto", connect: Connect | None = None,
    on_progress: Callable[[str], None] | None = None, ready_timeout: float = 60.0,
) -> _S:  # fmt: skip
    """``ContainerSession.resume`` (see there)."""
    snap, meta = _snapstore.load(snapshot)
    name = validate_name(name or snap.session)
    options = _options(meta, transport)
    if _running(docker, name):
        raise SessionExists(
            f"session {name!r} runs already: resume under another name "
            f"(`codeexec resume {snap.name} --name NEW`, name=...) or stop it first"
        )
    if snap.method == "checkpoint":
        return _restore(cls, snap, meta, name, options, docker, connect, ready_timeout)
    return _portable_load(cls, snap, meta, name, options, docker, connect, on_progress)


# -- checkpoint ------------------------------------------------------------------------


def _checkpoint(session: ContainerSession, docker: Docker, stage: Path) -> None:
    """Quiesce the executor, checkpoint the sandbox, wake the executor again."""
    with session._using() as client:
        client.quiesce(QUIESCE_SECONDS)
    session._channel.close()
    target = stage / "checkpoint"
    deadline = time.monotonic() + 15.0
    while True:
        try:
            docker.checkpoint(session.container_id, str(target))
            break
        except DockerError as exc:
            # The relay's connection may still be closing: gVisor refuses to save
            # a TCP endpoint that something waits on. Then the container still runs.
            if "waiters" not in exc.stderr or time.monotonic() > deadline:
                _wake(docker, session.container_id)
                raise SnapshotError(f"the engine could not checkpoint session "
                                    f"{session.name!r}: {exc.message}") from exc  # fmt: skip
            shutil.rmtree(target, ignore_errors=True)
            time.sleep(0.1)
    _addrcache.forget(session.name, session.container_id)
    docker.rm(session.container_id)  # stopped by the checkpoint; --rm may not have run yet
    if not (target / CHECKPOINT_NAME).is_dir():
        raise SnapshotError(
            f"the engine wrote no checkpoint into {target}: the checkpoint method needs a "
            "local engine (the engine writes the checkpoint on its own filesystem)"
        )


def _wake(docker: Docker, container: str) -> None:
    try:
        docker.kill(container, "USR1")
    except DockerError:
        pass  # gone, or stopped: nothing to wake (it relistens by itself anyway)


def _restore(
    cls: type[_S], snap: Snapshot, meta: dict[str, Any], name: str, options: SessionOptions,
    docker: Docker, connect: Connect | None, ready_timeout: float,
) -> _S:  # fmt: skip
    facts = docker.engine_facts()
    if options.runtime not in checkpointable_runtimes(facts) or not facts["experimental"]:
        raise SnapshotError(
            f"snapshot {snap.name!r} is a gVisor checkpoint (runtime {options.runtime!r}), "
            "and this engine cannot restore one: " + choose_method(facts, options.runtime)[1]
        )
    if meta.get("protocol") != constants.PROTOCOL_VERSION:
        raise SnapshotError(
            f"snapshot {snap.name!r} holds an executor speaking protocol {meta.get('protocol')}"
            f" and this codeexec speaks {constants.PROTOCOL_VERSION}: take it again"
        )
    if docker.image_id(snap.image) != meta.get("image_id"):
        raise SnapshotError(
            f"snapshot {snap.name!r} needs image {snap.image} as it was ({meta.get('image_id')}),"
            " which this engine no longer has: a checkpoint resumes only on its own image"
        )
    containers = _containers_dir(facts)
    if not os.access(containers, os.W_OK):
        raise SnapshotError(
            f"resuming a checkpoint writes it into the engine's data root ({containers}), which "
            "this process may not write: run as root on the engine's host"
        )
    with _addrcache.session_lock(name):
        ref, channel = _restore_container(snap, meta, name, options, docker, connect, ready_timeout)
    session = cls(name=name, ref=ref, docker=docker, transport=options.transport,
                  connect=connect, channel=channel)  # fmt: skip
    session.created = True
    session._remember()
    return session


def _containers_dir(facts: dict[str, Any]) -> Path:
    return Path(facts["root"] or "/var/lib/docker") / "containers"


def _restore_container(
    snap: Snapshot, meta: dict[str, Any], name: str, options: SessionOptions, docker: Docker,
    connect: Connect | None, ready_timeout: float,
) -> tuple[SessionRef, Channel]:  # fmt: skip
    """A new container of session ``name`` running the checkpoint, and its connection.

    A failure removes the container: nothing half-restored stays behind.
    """
    token = str(meta.get("token") or "")
    register_secret(token)
    spec = session_run_spec(
        options, image=snap.image, name=name, suffix=secrets.token_hex(3),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip
    container = docker.create(spec, {"CODEEXEC_TOKEN": token})
    try:
        _link_tree(Path(snap.path) / "checkpoint" / CHECKPOINT_NAME,
                   _containers_dir(docker.engine_facts()) / container / "checkpoints"
                   / CHECKPOINT_NAME)  # fmt: skip
        docker.start_checkpoint(container)
        _wake(docker, container)
        ref = docker.inspect(container)
        channel = Channel(name=name, ref=ref, docker=docker, transport=options.transport,
                          connect=connect)  # fmt: skip
        channel.wait_ready(ready_timeout)
    except BaseException:
        docker.rm(container)
        raise
    return ref, channel


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link (same filesystem) or copy the checkpoint's files into ``target``."""
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in source.rglob("*"):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(exist_ok=True)
            continue
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)


# -- portable --------------------------------------------------------------------------


def _portable_save(session: ContainerSession, docker: Docker, stage: Path) -> dict[str, str]:
    """Pickle the namespace in the container, then stream it and /workspace out."""
    report = _report(session.execute(_CALL.format("save", PICKLE), timeout=_STREAM_TIMEOUT,
                                     result_limits=ResultLimits()))  # fmt: skip
    cid = session.container_id
    try:
        with open(stage / "workspace.tar", "wb") as sink:
            docker.pipe(tar_out_argv(cid, "/workspace"), sink=sink, timeout=_STREAM_TIMEOUT,
                        what="saving /workspace")  # fmt: skip
        with open(stage / "namespace.pickle", "wb") as sink:
            docker.pipe(cat_argv(cid, PICKLE), sink=sink, timeout=_STREAM_TIMEOUT,
                        what="saving the namespace")  # fmt: skip
    finally:
        docker.exec_ok(cid, ["rm", "-f", PICKLE])
    return {str(k): str(v) for k, v in (report.get("unsaved") or {}).items()}


def _portable_load(
    cls: type[_S], snap: Snapshot, meta: dict[str, Any], name: str, options: SessionOptions,
    docker: Docker, connect: Connect | None, on_progress: Callable[[str], None] | None,
) -> _S:  # fmt: skip
    started = cls.start(name, options, docker=docker, connect=connect, on_progress=on_progress)
    session = cast(_S, started)
    if not session.created:  # another process started that name meanwhile: not ours
        raise SessionExists(f"session {name!r} was started meanwhile; resume under another name")
    try:
        cid = session.container_id
        with open(Path(snap.path) / "workspace.tar", "rb") as source:
            docker.pipe(tar_in_argv(cid, "/workspace"), source=source,
                        timeout=_STREAM_TIMEOUT, what="restoring /workspace")  # fmt: skip
        with open(Path(snap.path) / "namespace.pickle", "rb") as source:
            docker.pipe(write_argv(cid, PICKLE), source=source, timeout=_STREAM_TIMEOUT,
                        what="restoring the namespace")  # fmt: skip
        report = _report(session.execute(_CALL.format("load", PICKLE), timeout=_STREAM_TIMEOUT,
                                         result_limits=ResultLimits()))  # fmt: skip
        docker.exec_ok(cid, ["rm", "-f", PICKLE])
    except BaseException:
        session.stop()
        raise
    session.resume_failures = {str(k): str(v) for k, v in (report.get("failed") or {}).items()}
    return session


def _report(result: Any) -> dict[str, Any]:
    """The JSON report a ``namespace_io`` call returned as the cell's value."""
    if result.status != "ok" or not isinstance(result.value, str):
        detail = result.error.evalue if result.error else result.status
        raise SnapshotError(f"the session could not (un)pickle its namespace: {detail}")
    try:
        report = json.loads(ast.literal_eval(result.value))
    except (ValueError, SyntaxError) as exc:
        raise SnapshotError(f"the session's snapshot report is unreadable: {exc}") from None
    return report if isinstance(report, dict) else {}


def _options(meta: dict[str, Any], transport: Transport) -> SessionOptions:
    settings = dict(meta.get("settings") or {})
    try:
        limits = Limits(**settings.pop("limits", {}))
        known = {"dependencies", "base_image", "network", "runtime", "read_only",
                 "idle_timeout", "max_lifetime"}  # fmt: skip
        kept = {k: v for k, v in settings.items() if k in known}
        scope = (meta.get("labels") or {}).get("codeexec.scope")
        return SessionOptions.of(limits=limits, transport=transport, scope=scope, **kept)
    except (CodeexecError, TypeError) as exc:
        raise SnapshotError(f"snapshot settings are not usable here: {exc}") from None


def _running(docker: Docker, name: str) -> bool:
    found = docker.find_session(name)
    return bool(found and found[0].running)


def _scope_labels(labels: Any) -> dict[str, str]:
    return {k: v for k, v in dict(labels or {}).items() if k == "codeexec.scope"}
