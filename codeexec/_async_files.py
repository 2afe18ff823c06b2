"""``AsyncContainerSession.files``: the session's remote files, awaited.

Each call runs its ``RemoteFiles`` twin (``_filetree.py``) in a worker thread, so a
large listing or removal never stalls the event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from ._filetree import RemoteFiles
from ._results import FileInfo


class AsyncRemoteFiles:
    """``await s.files.list("results")``, ``remove(path)``, ``mkdir(path)``."""

    def __init__(
        self, files: RemoteFiles, in_thread: Callable[[Callable[[], Any]], Awaitable[Any]]
    ) -> None:
        self.sync = files
        self._in_thread = in_thread

    async def list(self, path: str = ".", *, recursive: bool = False) -> list[FileInfo]:
        call = functools.partial(self.sync.list, path, recursive=recursive)
        result: list[FileInfo] = await self._in_thread(call)
        return result

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        await self._in_thread(functools.partial(self.sync.remove, path, recursive=recursive))

    async def mkdir(self, path: str) -> None:
        await self._in_thread(functools.partial(self.sync.mkdir, path))
