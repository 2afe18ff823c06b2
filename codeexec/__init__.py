"""codeexec: run Python code in Docker containers whose state persists between executions.

from codeexec import ContainerSession

with ContainerSession.start(dependencies=["numpy"]) as s:
    s.execute("import numpy as np; x = np.arange(4)")
    print(s.execute("x.sum()").value)   # 6
"""

from __future__ import annotations

from .errors import CodeexecError as CodeexecError
from .errors import ConnectionLost as ConnectionLost
from .errors import ContainerStartError as ContainerStartError
from .errors import DockerError as DockerError
from .errors import DockerNotAvailable as DockerNotAvailable
from .errors import ExecutorError as ExecutorError
from .errors import FileTransferError as FileTransferError
from .errors import HandshakeError as HandshakeError
from .errors import ImageBuildError as ImageBuildError
from .errors import InvalidDependency as InvalidDependency
from .errors import NoSuchSession as NoSuchSession
from .errors import ProtocolError as ProtocolError
from .errors import SessionBusy as SessionBusy
from .errors import SessionExists as SessionExists
from .models import Display as Display
from .models import ExecError as ExecError
from .models import ExecResult as ExecResult
from .models import ImageInfo as ImageInfo
from .models import Limits as Limits
from .models import SessionInfo as SessionInfo
from .models import StreamEvent as StreamEvent
from .session import ContainerSession as ContainerSession
from .session import list_sessions as list_sessions

__version__ = "0.1.0"

__all__ = [
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
    "Limits",
    "NoSuchSession",
    "ProtocolError",
    "SessionBusy",
    "SessionExists",
    "SessionInfo",
    "StreamEvent",
    "__version__",
    "list_sessions",
]
