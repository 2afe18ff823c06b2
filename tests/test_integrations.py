"""The integrations' shared parts, without an engine (tests/integration/test_integrations.py
drives each adapter through its framework against the real engine)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from codeexec import ExecError, ExecResult
from codeexec.integrations import require, result_text

FRAMEWORKS = ("autogen_core", "smolagents", "langchain_core", "pydantic")


def test_import_codeexec_needs_no_framework() -> None:
    # The namespace, the async session and the integrations package itself load
    # without any framework; only an adapter module imports its own.
    code = (
        "import sys, codeexec, codeexec.integrations\n"
        "codeexec.AsyncContainerSession\n"
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stderr


def test_a_missing_framework_names_the_extra_to_install() -> None:
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'codeexec\[autogen\]'"):
        require("codeexec_no_such_framework", "autogen")


def test_result_text_is_what_a_model_reads() -> None:
    ok = ExecResult(status="ok", stdout="out\n", stderr="warn\n", value="42")
    assert result_text(ok) == "out\nwarn\n42\n"
    error = ExecError(
        "ZeroDivisionError",
        "division by zero",
        ("Traceback ...", "ZeroDivisionError: division by zero"),
    )
    failed = ExecResult(status="error", stdout="before\n", error=error)
    assert result_text(failed) == "before\nTraceback ...\nZeroDivisionError: division by zero\n"
    assert "timeout" in result_text(ExecResult(status="timeout"))
    assert result_text(ExecResult(status="ok")) == ""
