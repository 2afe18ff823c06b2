"""The docker verbs of whole-session snapshots, as a mixin of ``Docker``.

They run nothing themselves: every call goes through ``Docker._run`` (or
``Docker.pipe`` for the binary streams of the portable method) in ``docker.py``;
the argument lists come from ``_snapargs.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import IO, Any

from . import _snapargs as args
from ._dockerargs import RunSpec
from ._dockerverbs import _Seam
from .errors import ContainerStartError, DockerError, DockerNotAvailable


class SnapshotVerbs(_Seam):
    """``engine_facts``, ``checkpoint``, ``create``, ``start_checkpoint``, ``exec_ok``."""

    def pipe(
        self, args: Sequence[str], *, source: IO[bytes] | None = None,
        sink: IO[bytes] | None = None, timeout: float, what: str,
    ) -> None:  # fmt: skip
        raise NotImplementedError

    def engine_facts(self) -> dict[str, Any]:
        """Experimental features, runtimes and the data root (one ``docker info``)."""
        proc = self._run(args.info_argv(), what="`docker info`")
        try:
            info = json.loads(proc.stdout or "{}")
        except json.JSONDecodeError:
            info = {}
        return args.engine_facts(info if isinstance(info, dict) else {})

    def checkpoint(self, container: str, directory: str, *, timeout: float = 600.0) -> None:
        """Checkpoint the running container into ``directory``; the container stops."""
        self._run(
            args.checkpoint_argv(container, directory),
            timeout=timeout,
            what=f"checkpointing container {container}",
        )

    def create(self, spec: RunSpec, secret_values: Mapping[str, str]) -> str:
        """Create (not start) a session container; returns its id."""
        try:
            proc = self._run(
                args.create_argv(spec),
                timeout=120,
                env=secret_values,
                what=f"creating container {spec.container_name}",
            )
        except DockerError as exc:
            if isinstance(exc, DockerNotAvailable):
                raise
            raise ContainerStartError(exc.message, argv=exc.argv, stderr=exc.stderr) from exc
        return proc.stdout.strip()

    def start_checkpoint(self, container: str, *, timeout: float = 600.0) -> None:
        """Start a created container from the checkpoint placed in its directory."""
        self._run(
            args.start_checkpoint_argv(container),
            timeout=timeout,
            what=f"restoring container {container} from its checkpoint",
        )

    def exec_ok(self, container: str, command: Sequence[str], *, timeout: float = 60.0) -> None:
        """Run ``command`` in the container; a non-zero exit is an error."""
        self._run(args.exec_argv(container, command), timeout=timeout, what=" ".join(command))
