"""Checkpoints inside a session: save, restore, list and drop the Python process's
state (docs/snapshots.md, Tier 1).

A mixin of ``ContainerSession``. A checkpoint is a parked fork() of the session's
Python process, kept inside the container: every variable, imported module and
object returns exactly as it was, in milliseconds, and the same checkpoint can be
restored any number of times until it is dropped. It lives as long as the
container. ``files=True`` also saves /workspace (up to 100 MiB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _forking
from ._checkpoint import Checkpoint, validate_tag
from ._executing import Executing
from .options import validate_name

if TYPE_CHECKING:
    from typing_extensions import Self

    from .docker import Docker


def _name(checkpoint: Checkpoint | str) -> str:
    return validate_tag(checkpoint.name if isinstance(checkpoint, Checkpoint) else checkpoint)


class Checkpointing(Executing):
    """``checkpoint``, ``restore``, ``checkpoints``, ``drop`` and ``fork``."""

    _docker: Docker
    _forked = False

    def checkpoint(self, name: str | None = None, *, files: bool = False) -> Checkpoint:
        """Save the session's Python state (and /workspace with ``files``) under ``name``.

        ``name`` (1-64 letters, digits, ``_.-``) defaults to ``cp1``, ``cp2``, ...
        The checkpoint shares memory pages with the session until either side
        changes them (copy-on-write), so it costs little at first; pages the
        session changes later count twice against the container's memory limit.

        Raises:
            CheckpointError: the name is taken or malformed (``code`` says which), the
                session holds the most checkpoints it may (8, ``checkpoint_limit``),
                or /workspace is larger than 100 MiB with ``files`` (``files_too_large``).
            SessionBusy: code is running in the session.
        """
        if name is not None:
            validate_tag(name)
        with self._using() as client:
            return Checkpoint.from_wire(client.checkpoint(name, files=files))

    def restore(self, checkpoint: Checkpoint | str) -> Checkpoint:
        """Put the session back to ``checkpoint`` (a ``Checkpoint`` or its name).

        The current Python process is replaced by a copy of the checkpoint's; the
        checkpoint stays, so it can be restored again. Files in /workspace go back
        too if the checkpoint saved them, else they are untouched.

        Raises:
            CheckpointError: no such checkpoint (``no_such_checkpoint``), or its process
                was killed, e.g. at the memory limit (``checkpoint_lost``).
            SessionBusy: code is running in the session.
        """
        with self._using() as client:
            return Checkpoint.from_wire(client.restore(_name(checkpoint)))

    def checkpoints(self) -> list[Checkpoint]:
        """The session's checkpoints, oldest first."""
        with self._using() as client:
            return [Checkpoint.from_wire(c) for c in client.checkpoints()]

    def drop(self, checkpoint: Checkpoint | str) -> None:
        """Forget ``checkpoint`` and free its memory.

        Raises:
            CheckpointError: no such checkpoint.
        """
        with self._using() as client:
            client.drop(_name(checkpoint))

    @property
    def is_fork(self) -> bool:
        """Whether this session is a fork (it runs in its source session's container)."""
        return bool(self._channel.ref.branch)

    def fork(self, name: str) -> Self:
        """A second, independent session named ``name`` that starts as a copy of this one.

        The copy is made by fork() inside this session's container: every variable,
        import and object, in milliseconds; the two share memory pages until either
        changes them, and share the container's files and limits. This session
        keeps running and keeps its connections. ``name`` works like any session's
        name (``attach``, ``codeexec exec -s NAME``, MCP tools); stopping the fork
        ends only the fork, stopping this session ends its forks too.

        Raises:
            SessionExists: a session named ``name`` exists.
            CheckpointError: the session has 8 forks (``fork_limit``), or fork() failed.
            SessionBusy: code is running in the session.
        """
        validate_name(name)

        def client_fork(branch: str) -> None:
            with self._using() as client:
                client.fork(branch)

        def make(branch: str, ref: Any) -> Any:
            return type(self)(  # type: ignore[call-arg]
                name=branch, ref=ref, docker=self._docker, timeout=self.default_timeout,
                output_limit=self.output_limit, result_limits=self.result_limits,
                transport=self._channel.transport,
            )  # fmt: skip

        forked = _forking.fork(self, name, client_fork, make)
        self._forked = True  # stop() removes the forks' markers with the container
        return forked
