"""Forks: a second, independent session inside the same container (docs/snapshots.md).

``ContainerSession.fork(name)`` asks the executor for a branch: a second worker,
started from a fork()ed copy of the source's Python process (every variable,
module and object), with its own executions and checkpoints. The source keeps
running and keeps its connections.

A running container cannot take new labels, so a fork's name lives on a marker: a
created, never started container labelled with the fork's session name and the
id of the container it runs in (``LABEL_FORK_OF``). ``attach`` (and so every CLI
command and MCP tool) finds the marker when no container of that name runs and
connects to the source's executor, switched to the branch. Stopping the fork
ends its worker and removes the marker; stopping the source ends the container
and with it every fork (their markers are removed with it by ``codeexec stop``,
and a marker whose container is gone is removed on the next lookup).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from ._dockerverbs import LABEL_FORK_OF
from .docker import Docker
from .errors import CodeexecError, NoSuchSession, SessionExists
from .models import SessionInfo, SessionRef

if TYPE_CHECKING:
    from ._checkpointing import Checkpointing

_S = TypeVar("_S", bound="Checkpointing")


def fork(session: _S, name: str, client_fork, make) -> _S:  # type: ignore[no-untyped-def]
    """``ContainerSession.fork`` (see there): ``client_fork(name)`` makes the branch,
    ``make(name, ref)`` the session object."""
    docker: Docker = session._docker
    if docker.find_session(name, all=True):
        raise SessionExists(f"a session named {name!r} exists; pick another name for the fork")
    source = session._channel.ref
    if source.branch:
        raise CodeexecError(f"{session.name!r} is a fork itself; fork its source session instead")
    client_fork(name)
    try:
        docker.create_fork_marker(name, source, secrets.token_hex(3))
    except BaseException:
        with session._using() as client:
            client.close_fork(name)
        raise
    return make(name, replace(source, branch=name))  # type: ignore[no-any-return]


def markers(docker: Docker, name: str) -> list[SessionRef]:
    return [r for r in docker.find_session(name, all=True) if r.labels.get(LABEL_FORK_OF)]


def markers_in(docker: Docker, container_id: str) -> list[str]:
    """The markers of the forks running in ``container_id``."""
    return [m for m, source in docker.fork_markers().items() if source == container_id]


def resolve(docker: Docker, name: str) -> SessionRef | None:
    """The running source container of fork ``name``, switched to its branch; None
    if ``name`` is no fork. A marker whose container is gone is removed."""
    for marker in markers(docker, name):
        try:
            source = docker.inspect(marker.labels[LABEL_FORK_OF])
        except NoSuchSession:
            source = None
        if source is None or not source.running:
            docker.rm(marker.id)
            return None
        return replace(source, branch=name)
    return None


def stop_fork(docker: Docker, ref: SessionRef, close) -> None:  # type: ignore[no-untyped-def]
    """End fork ``ref.branch`` (``close(name)`` asks its executor) and remove its marker."""
    try:
        close(ref.branch)
    except CodeexecError:
        pass  # its container (or the branch) is gone already
    docker.rm(*(m.id for m in markers(docker, ref.branch)))


def with_forks(
    chosen: list[SessionInfo], sessions: list[SessionInfo]
) -> tuple[list[SessionInfo], list[str]]:
    """``codeexec stop``'s choice, split: the containers to remove (with the markers
    of the forks that end with them) and the forks whose source keeps running."""
    ids = {s.container_id for s in chosen if not s.labels.get(LABEL_FORK_OF)}
    remove = [s for s in chosen if not s.labels.get(LABEL_FORK_OF)]
    remove += [s for s in sessions if s.labels.get(LABEL_FORK_OF) in ids]
    alone = [
        s.name for s in chosen if s.labels.get(LABEL_FORK_OF) and s.labels[LABEL_FORK_OF] not in ids
    ]
    return remove, alone


def stop_by_name(name: str, docker: Docker, attach) -> None:  # type: ignore[no-untyped-def]
    """Stop fork ``name`` (``attach(name, docker=...)``); a dead one loses its marker."""
    try:
        attach(name, docker=docker).stop()
    except CodeexecError:
        docker.rm(*(m.id for m in markers(docker, name)))
