"""Typed, frozen results and options returned and accepted by codeexec."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["ok", "error", "timeout", "interrupted"]
StreamName = Literal["stdout", "stderr"]

_BINARY_MIME = ("image/png", "image/jpeg", "image/gif", "application/pdf")
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/svg+xml": ".svg",
    "application/pdf": ".pdf",
    "text/html": ".html",
    "text/markdown": ".md",
    "application/json": ".json",
}


@dataclass(frozen=True)
class ExecError:
    """An exception raised by the user's code: name, message and traceback lines."""

    ename: str
    evalue: str
    traceback: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ExecError:
        return cls(
            ename=str(data.get("ename", "")),
            evalue=str(data.get("evalue", "")),
            traceback=tuple(str(line) for line in data.get("traceback") or ()),
        )

    def format(self) -> str:
        """The traceback as the Python REPL prints it."""
        if self.traceback:
            # The executor sends lines without newlines; tolerate either form.
            return "\n".join(line.rstrip("\n") for line in self.traceback)
        return f"{self.ename}: {self.evalue}" if self.evalue else self.ename


@dataclass(frozen=True)
class StreamEvent:
    """A chunk of output produced while the code runs."""

    name: StreamName
    text: str


@dataclass(frozen=True)
class Display:
    """A rich output (a plot, an image, HTML): MIME type -> content.

    Binary types (``image/png``, ``image/jpeg``) hold ``bytes``; text types hold ``str``.
    """

    data: Mapping[str, bytes | str]

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Display:
        decoded: dict[str, bytes | str] = {}
        for mime, value in data.items():
            if mime in _BINARY_MIME and isinstance(value, str):
                decoded[mime] = base64.b64decode(value)
            elif isinstance(value, (str, bytes)):
                decoded[mime] = value
            else:
                import json

                decoded[mime] = json.dumps(value)
        return cls(data=decoded)

    @property
    def mime_types(self) -> tuple[str, ...]:
        return tuple(self.data)

    def save(self, directory: str | os.PathLike[str], stem: str = "output") -> list[Path]:
        """Write every non-plain-text representation into ``directory``; return the paths."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for mime, value in self.data.items():
            ext = _EXTENSIONS.get(mime)
            if ext is None:
                continue
            path = target / f"{stem}{ext}"
            if isinstance(value, bytes):
                path.write_bytes(value)
            else:
                path.write_text(value, encoding="utf-8")
            paths.append(path)
        return paths


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one execution.

    ``status`` is ``ok``, ``error`` (the code raised: see ``error``), ``timeout`` or
    ``interrupted``. ``value`` is the ``repr()`` of the last expression, like the
    Python REPL. ``restarted`` means the Python process was replaced and every
    variable is gone. ``truncated`` means output past the cap was dropped.
    """

    status: Status
    stdout: str = ""
    stderr: str = ""
    value: str | None = None
    error: ExecError | None = None
    duration_ms: float = 0.0
    displays: tuple[Display, ...] = ()
    truncated: bool = False
    restarted: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def save_displays(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Save every rich output into ``directory`` (``output-1.png`` …); return the paths."""
        paths: list[Path] = []
        for index, display in enumerate(self.displays, start=1):
            paths.extend(display.save(directory, stem=f"output-{index}"))
        return paths

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; binary display data is base64-encoded."""
        data = asdict(self)
        data["displays"] = [
            {
                mime: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v
                for mime, v in d.data.items()
            }
            for d in self.displays
        ]
        if self.error is not None:
            data["error"]["traceback"] = list(self.error.traceback)
        return data


@dataclass(frozen=True)
class Limits:
    """Resource limits of a session's container.

    ``memory`` is a docker size (``"1g"``, ``"512m"``); ``cpus`` a float; ``pids`` the
    process-count limit; ``tmp_size`` / ``workspace_size`` size the writable tmpfs areas.
    """

    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 256
    tmp_size: str = "512m"
    workspace_size: str = "512m"


@dataclass(frozen=True)
class SessionInfo:
    """What Docker knows about one session (found through its labels)."""

    name: str
    container_id: str
    container_name: str
    image: str
    status: str
    dependencies: tuple[str, ...] = ()
    network: str = "bridge"
    created: str = ""
    idle_timeout: float | None = None
    max_lifetime: float | None = None  # seconds from the container's start (0: none)
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dependencies"] = list(self.dependencies)
        data["labels"] = dict(self.labels)
        return data


@dataclass(frozen=True)
class ImageInfo:
    """An environment image codeexec built."""

    tag: str
    image_id: str
    dependencies: tuple[str, ...]
    base_image: str
    created: str
    size: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dependencies"] = list(self.dependencies)
        return data
