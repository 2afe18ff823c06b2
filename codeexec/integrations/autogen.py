"""An AutoGen ``CodeExecutor`` whose code blocks run in one codeexec session.

``pip install 'codeexec[autogen]'``. Python blocks share one namespace across calls
(define ``x`` in one reply, use it in the next); ``sh``/``bash`` blocks run in the
same container. ``restart()`` drops every variable (``reset``); cancelling through
AutoGen's ``CancellationToken`` interrupts the code in the container.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import require, result_text

require("autogen_core", "autogen")
from autogen_core import CancellationToken  # noqa: E402
from autogen_core.code_executor import CodeBlock, CodeExecutor, CodeResult  # noqa: E402

from ..async_session import AsyncContainerSession  # noqa: E402
from ..session import ContainerSession  # noqa: E402

PYTHON = frozenset({"python", "py", "python3", ""})
SHELL = frozenset({"sh", "bash", "shell"})
# A shell block runs in the container; a non-zero status is an error like an exception.
_SHELL_CODE = """\
def __codeexec_sh(script):
    import subprocess
    status = subprocess.run(["sh", "-c", script]).returncode
    if status:
        raise SystemExit(f"the shell block exited with status {{status}}")
try:
    __codeexec_sh({script!r})
finally:
    del __codeexec_sh
"""


class CodeexecCodeExecutor(CodeExecutor):
    """Runs AutoGen code blocks in a persistent codeexec session.

    Args:
        name: the session's name (started, or attached when it runs with the same
            settings, by :meth:`start`); ignored when ``session`` is given.
        session: an existing session to use; :meth:`stop` then leaves it running.
        timeout: seconds per block before the code is interrupted.
        **options: ``ContainerSession.start`` options (``dependencies``, ``network``, ...).

    Use it with ``async with`` or call ``start``/``stop``; the first
    ``execute_code_blocks`` starts the session if ``start`` was not called.
    """

    def __init__(
        self,
        name: str = "autogen",
        *,
        session: AsyncContainerSession | ContainerSession | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> None:
        if isinstance(session, ContainerSession):
            session = AsyncContainerSession(session)
        self._session = session
        self._owned = session is None
        self._name = name
        self._options = options
        self.timeout = timeout

    @property
    def session(self) -> AsyncContainerSession | None:
        """The session the blocks run in (None before :meth:`start`)."""
        return self._session

    async def start(self) -> None:
        if self._session is None:
            self._session = await AsyncContainerSession.start(self._name, **self._options)

    async def stop(self) -> None:
        session = self._session
        if session is not None and self._owned:
            self._session = None
            await session.stop()

    async def restart(self) -> None:
        """Drop every variable: a fresh Python process in the same container."""
        if self._session is not None:
            await self._session.reset()

    async def execute_code_blocks(
        self, code_blocks: list[CodeBlock], cancellation_token: CancellationToken
    ) -> CodeResult:
        """Run the blocks in order; stop at the first that fails (exit code 1)."""
        await self.start()
        assert self._session is not None  # started above
        output: list[str] = []
        for block in code_blocks:
            language = block.language.lower()
            if language in SHELL:
                code = _SHELL_CODE.format(script=block.code)
            elif language in PYTHON:
                code = block.code
            else:
                output.append(f"unsupported language {block.language!r}: use python or sh\n")
                return CodeResult(exit_code=1, output="".join(output))
            run = asyncio.ensure_future(self._session.execute(code, timeout=self.timeout))
            cancellation_token.link_future(run)  # cancelling the token interrupts the code
            result = await run
            output.append(result_text(result))
            if not result.ok:
                return CodeResult(exit_code=1, output="".join(output))
        return CodeResult(exit_code=0, output="".join(output))
