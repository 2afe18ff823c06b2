"""A smolagents executor whose code runs in one codeexec session.

``pip install 'codeexec[smolagents]'``, then
``CodeAgent(tools=..., model=..., executor=CodeexecExecutor())``. The agent's steps
share one namespace in the container; its tools are defined there, and
``final_answer(...)`` ends the run as with smolagents' own remote executors.
"""

from __future__ import annotations

import io
from typing import Any

from . import require, result_text

require("smolagents", "smolagents")
from smolagents.local_python_executor import CodeOutput  # noqa: E402
from smolagents.monitoring import AgentLogger, LogLevel  # noqa: E402
from smolagents.remote_executors import RemotePythonExecutor  # noqa: E402
from smolagents.utils import AgentError  # noqa: E402

from ..session import ContainerSession  # noqa: E402


class CodeexecExecutor(RemotePythonExecutor):  # type: ignore[misc]  # smolagents is untyped
    """Runs a smolagents ``CodeAgent``'s code in a persistent codeexec session.

    Args:
        additional_imports: packages to install into the session (``install``).
        logger: smolagents' logger (default: errors only).
        name: the session's name (started, or attached when it runs with the same
            settings); ignored when ``session`` is given.
        session: an existing ``ContainerSession``; :meth:`cleanup` leaves it running.
        timeout: seconds per step before the code is interrupted.
        allow_pickle: as smolagents' other remote executors (leave it False).
        **options: ``ContainerSession.start`` options (``dependencies``, ``network``, ...).
    """

    def __init__(
        self,
        additional_imports: list[str] | None = None,
        logger: AgentLogger | None = None,
        *,
        name: str = "smolagents",
        session: ContainerSession | None = None,
        timeout: float | None = None,
        allow_pickle: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(
            additional_imports or [], logger or AgentLogger(level=LogLevel.ERROR), allow_pickle
        )
        self._owned = session is None
        self.session = session or ContainerSession.start(name, **options)
        self.timeout = timeout
        self.installed_packages = self.install_packages(additional_imports or [])

    def run_code_raise_errors(self, code: str) -> CodeOutput:
        """Run one step's code; ``final_answer`` ends the run, an exception is an ``AgentError``."""
        result = self.session.execute(code, timeout=self.timeout)
        logs = result.stdout + result.stderr
        error = result.error
        if error is not None and error.ename == self.FINAL_ANSWER_EXCEPTION:
            answer = self._deserialize_final_answer(error.evalue, self.allow_pickle)
            return CodeOutput(output=answer, logs=logs, is_final_answer=True)
        if not result.ok:
            raise AgentError(
                f"{logs}\nExecuting code yielded an error:\n{result_text(result)[len(logs) :]}",
                self.logger,
            )
        return CodeOutput(output=_output(result), logs=logs, is_final_answer=False)

    def install_packages(self, additional_imports: list[str]) -> list[str]:
        """Install packages with ``ContainerSession.install`` (validated, the host's index)."""
        if additional_imports:
            result = self.session.install(additional_imports)
            if not result.ok:
                raise AgentError(f"installing {additional_imports} failed:\n{result_text(result)}",
                                 self.logger)  # fmt: skip
        return list(additional_imports)

    def cleanup(self) -> None:
        """Remove the session's container (unless it was given to the executor)."""
        if self._owned:
            self.session.stop()


def _output(result: Any) -> Any:
    """The step's value: an image it displayed last (as PIL), else the value's repr."""
    for display in reversed(result.displays):
        data = display.data.get("image/png")
        if isinstance(data, bytes):
            from PIL import Image

            return Image.open(io.BytesIO(data))
    return result.value
