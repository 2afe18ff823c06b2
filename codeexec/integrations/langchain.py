"""A LangChain tool that runs Python in one codeexec session.

``pip install 'codeexec[langchain]'``, then ``CodeexecTool(session=session)``: a
``BaseTool`` whose calls share the session's namespace. It answers with the output,
the last expression's value and any traceback, as text a model can act on.
"""

from __future__ import annotations

from typing import Any

from . import require, result_text

require("langchain_core", "langchain")
from langchain_core.tools import BaseTool, ToolException  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

from ..async_session import AsyncContainerSession  # noqa: E402
from ..errors import CodeexecError  # noqa: E402
from ..session import ContainerSession  # noqa: E402


class CodeInput(BaseModel):
    code: str = Field(description="Python source; the value of a last expression is shown")


class CodeexecTool(BaseTool):
    """Run Python in a persistent codeexec session (variables survive between calls).

    ``session`` is a started ``ContainerSession``; the tool never stops it.
    ``timeout`` caps one call in seconds (default: the session's). A session that is
    gone raises ``ToolException`` (set ``handle_tool_error=True`` to hand the message
    to the model instead).
    """

    name: str = "python"
    description: str = (
        "Run Python code in a persistent sandboxed session and return its output, the "
        "value of the last expression and any traceback. Variables, imports and files "
        "persist between calls."
    )
    args_schema: type[BaseModel] = CodeInput
    session: ContainerSession
    timeout: float | None = None

    def _run(self, code: str, *args: Any, **kwargs: Any) -> str:
        try:
            return result_text(self.session.execute(code, timeout=self.timeout))
        except CodeexecError as exc:
            raise ToolException(str(exc)) from exc

    async def _arun(self, code: str, *args: Any, **kwargs: Any) -> str:
        # Awaited in a worker thread: cancelling the call interrupts the code.
        session = AsyncContainerSession(self.session)
        try:
            return result_text(await session.execute(code, timeout=self.timeout))
        except CodeexecError as exc:
            raise ToolException(str(exc)) from exc
