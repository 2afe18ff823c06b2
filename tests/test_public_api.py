"""The public namespace: a sorted, complete __all__ and no heavy imports."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import codeexec


def test_exported_members() -> None:
    # Submodules appear as attributes once anything imports them (cli, mcp_server, …).
    public = {
        name
        for name in dir(codeexec)
        if not name.startswith("_") and not isinstance(getattr(codeexec, name), ModuleType)
    } - {"annotations"}
    assert set(codeexec.__all__) - {"__version__"} == public
    assert codeexec.__all__ == sorted(
        codeexec.__all__, key=str.lower
    ) or codeexec.__all__ == sorted(codeexec.__all__)
    for name in codeexec.__all__:
        assert getattr(codeexec, name) is not None


def test_import_does_not_pull_cli_or_mcp_dependencies() -> None:
    code = (
        "import sys, codeexec\n"
        "heavy = [m for m in ('typer', 'rich', 'mcp', 'click') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


def test_every_error_derives_from_codeexec_error() -> None:
    for name in codeexec.__all__:
        obj = getattr(codeexec, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, codeexec.CodeexecError), name


def test_public_submodules_are_attributes_of_the_package() -> None:
    # `import codeexec` then `codeexec.images.…` worked when the namespace imported
    # eagerly; the lazy namespace keeps it (tests/integration/test_wheel.py uses it).
    # A fresh interpreter, so no other import has loaded the submodule already.
    code = (
        "import codeexec, sys\n"
        "assert 'codeexec.images' not in sys.modules\n"
        "assert codeexec.images.executor_source_dir().is_dir()\n"
        "try:\n"
        "    codeexec.no_such_thing\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
