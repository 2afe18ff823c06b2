"""What the host shares with the executor, read from the executor's source.

``executor_image/codeexec_executor/constants.py`` is the one definition of every
value both sides must agree on (protocol version, frame limits, result caps,
interrupt grace, port, user, paths); ``linescan.py`` is the one scanner of where a
line of Python leaves a string or a bracket (both sides split a cell at its
``%pip`` and ``!`` lines with it). The executor imports them inside the container;
the host executes the same files, shipped with it (in a wheel under
``codeexec/_executor_image``), into modules of its own here. Nothing is copied, so
nothing can drift (docs/architecture.md, tests/test_shared_constants.py). Both are
stdlib-only files without imports of their own.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

_PREFIX = "codeexec._executor_"


def executor_source_dir() -> Path:
    """Where the executor and the Dockerfile template live (wheel or checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_executor_image", here.parent / "executor_image"):
        if (candidate / "codeexec_executor" / "__main__.py").is_file():
            return candidate
    raise FileNotFoundError(
        "codeexec's executor files are missing from this installation; reinstall codeexec"
    )


def _load(name: str) -> types.ModuleType:
    # Not imported as a package: the executor's directory is not on sys.path, and
    # putting it there would let it shadow (or be shadowed by) other modules.
    loaded = sys.modules.get(_PREFIX + name)
    if loaded is not None:
        return loaded
    path = executor_source_dir() / "codeexec_executor" / f"{name}.py"
    module = types.ModuleType(_PREFIX + name, f"codeexec_executor/{name}.py, as the host reads it")
    module.__file__ = str(path)
    exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)
    sys.modules[_PREFIX + name] = module
    return module


if TYPE_CHECKING:  # mypy reads the executor's modules themselves (mypy_path)
    from codeexec_executor import constants as constants, linescan as linescan
else:
    constants = _load("constants")
    linescan = _load("linescan")
