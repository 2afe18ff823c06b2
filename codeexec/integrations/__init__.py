"""Adapters that put a codeexec session where users already are (optional extras).

- ``codeexec.integrations.autogen``: ``CodeexecCodeExecutor``, an AutoGen
  ``CodeExecutor`` (``pip install 'codeexec[autogen]'``);
- ``codeexec.integrations.smolagents``: ``CodeexecExecutor`` for
  ``CodeAgent(executor=...)`` (``pip install 'codeexec[smolagents]'``);
- ``codeexec.integrations.langchain``: ``CodeexecTool``, a LangChain tool
  (``pip install 'codeexec[langchain]'``).

Each is a thin adapter over one session, so variables persist between calls.
``import codeexec`` never imports them or their frameworks (docs/integrations.md).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from ..models import ExecResult


def require(module: str, extra: str) -> ModuleType:
    """Import a framework, or say which extra installs it."""
    try:
        return import_module(module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"this integration needs {module.split('.')[0]!r}: pip install 'codeexec[{extra}]'",
            name=exc.name,
        ) from exc


def result_text(result: ExecResult) -> str:
    """What a model reads of a result: output, the last value, then the error if any."""
    parts = [result.stdout, result.stderr]
    if result.value is not None:
        parts.append(result.value + "\n")
    if result.error is not None:
        parts.append(result.error.format() + "\n")
    elif result.status == "timeout":
        parts.append("the code ran past its timeout and was interrupted; variables are kept\n")
    elif result.status == "interrupted":
        parts.append("the code was interrupted; variables are kept\n")
    return "".join(parts)
