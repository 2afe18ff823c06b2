"""The constants the host shares with the executor, read from the executor's source.

``executor_image/codeexec_executor/constants.py`` is the one definition of every
value both sides must agree on (protocol version, frame limits, result caps,
interrupt grace, port, user, paths). The executor imports it inside the container;
the host executes the same file, shipped with it (in a wheel under
``codeexec/_executor_image``), into a module of its own here. Nothing is copied, so
nothing can drift (docs/architecture.md, tests/test_shared_constants.py).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

_MODULE = "codeexec._executor_constants"


def executor_source_dir() -> Path:
    """Where the executor and the Dockerfile template live (wheel or checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_executor_image", here.parent / "executor_image"):
        if (candidate / "codeexec_executor" / "__main__.py").is_file():
            return candidate
    raise FileNotFoundError(
        "codeexec's executor files are missing from this installation; reinstall codeexec"
    )


def _load() -> types.ModuleType:
    # Not imported as a package: the executor's directory is not on sys.path, and
    # putting it there would let it shadow (or be shadowed by) other modules.
    path = executor_source_dir() / "codeexec_executor" / "constants.py"
    module = types.ModuleType(_MODULE, "codeexec_executor/constants.py, as the host reads it")
    module.__file__ = str(path)
    exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)
    sys.modules[_MODULE] = module
    return module


if TYPE_CHECKING:  # mypy reads the executor's module itself (mypy_path)
    from codeexec_executor import constants as constants
else:
    constants = sys.modules.get(_MODULE) or _load()
