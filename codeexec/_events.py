"""Output events of the notebook kind, beside ``models.StreamEvent`` and ``Display``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClearOutput:
    """``clear_output()`` ran in the code: the output so far is dropped.

    With ``wait`` it is dropped only when the next output arrives (IPython's
    ``clear_output(wait=True)``); ``ExecResult`` is built that way (docs/outputs.md).
    """

    wait: bool = False
