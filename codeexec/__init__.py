"""codeexec: run Python code in Docker containers whose state persists between executions.

from codeexec import ContainerSession

with ContainerSession.start(dependencies=["numpy"]) as s:
    s.execute("import numpy as np; x = np.arange(4)")
    print(s.execute("x.sum()").value)   # 6
"""

from __future__ import annotations

import typing as _typing

if _typing.TYPE_CHECKING:
    from ._checkpoint import Checkpoint as Checkpoint
    from .async_session import AsyncContainerSession as AsyncContainerSession
    from .errors import (
        CheckpointError as CheckpointError,
        CodeexecError as CodeexecError,
        ConnectionLost as ConnectionLost,
        ContainerStartError as ContainerStartError,
        DockerError as DockerError,
        DockerNotAvailable as DockerNotAvailable,
        ExecutorError as ExecutorError,
        FileTransferError as FileTransferError,
        HandshakeError as HandshakeError,
        ImageBuildError as ImageBuildError,
        InvalidDependency as InvalidDependency,
        InvalidOption as InvalidOption,
        NoSuchSession as NoSuchSession,
        ProtocolError as ProtocolError,
        SessionBusy as SessionBusy,
        SessionExists as SessionExists,
        SnapshotError as SnapshotError,
    )
    from .models import (
        Display as Display,
        ExecError as ExecError,
        ExecResult as ExecResult,
        ImageInfo as ImageInfo,
        Limits as Limits,
        ResultLimits as ResultLimits,
        SessionInfo as SessionInfo,
        SessionRef as SessionRef,
        StreamEvent as StreamEvent,
    )
    from .options import SessionOptions as SessionOptions
    from .session import ContainerSession as ContainerSession, list_sessions as list_sessions
    from .snapshot import Snapshot as Snapshot

# Each public name loads its module on first use (PEP 562), so `codeexec exec` and
# other callers of one submodule do not pay for the whole library (docs/performance.md).
_WHERE = {
    **dict.fromkeys(
        ("CheckpointError CodeexecError ConnectionLost ContainerStartError DockerError "
         "DockerNotAvailable ExecutorError FileTransferError HandshakeError ImageBuildError "
         "InvalidDependency InvalidOption NoSuchSession ProtocolError SessionBusy "
         "SessionExists SnapshotError").split(),
        "errors",
    ),
    **dict.fromkeys(
        ("Display ExecError ExecResult ImageInfo Limits ResultLimits SessionInfo SessionRef "
         "StreamEvent").split(),
        "models",
    ),
    "SessionOptions": "options",
    "AsyncContainerSession": "async_session",
    "Checkpoint": "_checkpoint",
    "ContainerSession": "session",
    "list_sessions": "session",
    "Snapshot": "snapshot",
}  # fmt: skip


def __getattr__(name: str) -> object:
    from importlib import import_module

    module = _WHERE.get(name)
    if module is None:
        if not name.startswith("_"):  # a public submodule, as before: codeexec.images
            try:
                return import_module(f".{name}", __name__)
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module 'codeexec' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__version__ = "0.1.0"

__all__ = [
    "AsyncContainerSession",
    "Checkpoint",
    "CheckpointError",
    "CodeexecError",
    "ConnectionLost",
    "ContainerSession",
    "ContainerStartError",
    "Display",
    "DockerError",
    "DockerNotAvailable",
    "ExecError",
    "ExecResult",
    "ExecutorError",
    "FileTransferError",
    "HandshakeError",
    "ImageBuildError",
    "ImageInfo",
    "InvalidDependency",
    "InvalidOption",
    "Limits",
    "NoSuchSession",
    "ProtocolError",
    "ResultLimits",
    "SessionBusy",
    "SessionExists",
    "SessionInfo",
    "SessionOptions",
    "SessionRef",
    "Snapshot",
    "SnapshotError",
    "StreamEvent",
    "__version__",
    "list_sessions",
]
