"""Typed, frozen results and options returned and accepted by codeexec."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._checks import (
    _MIN_MEMORY,
    _check_size,
    check_image_ref as check_image_ref,
    check_network as check_network,
)
from ._shared import constants
from .errors import CodeexecError, InvalidOption

Status = Literal["ok", "error", "timeout", "interrupted"]
StreamName = Literal["stdout", "stderr"]
Transport = Literal["auto", "tcp", "exec"]

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
    ``display_id`` is set by ``display(obj, display_id=...)``; ``update`` marks an
    ``update_display()`` event (docs/outputs.md).
    """

    data: Mapping[str, bytes | str]
    display_id: str | None = None
    update: bool = False

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

    ``status``: ``ok``, ``error`` (the code raised: see ``error``), ``timeout`` or
    ``interrupted``. ``value``: the ``repr()`` of the last expression. ``restarted``:
    the Python process was replaced, every variable is gone; ``rolled_back``
    (``rollback_on_error=True``): the failed code's changes were undone. ``truncated``:
    something went past a cap of ``ResultLimits`` and was replaced by a marker.
    ``execution_count`` numbers the session's cells, as in Jupyter (None: unknown).
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
    rolled_back: bool = False
    execution_count: int | None = None

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

    def __post_init__(self) -> None:
        # docker reads 0 or -1 as no limit; a tmpfs size goes into a mount-option string.
        _check_size("memory", self.memory, minimum=_MIN_MEMORY)
        _check_size("tmp_size", self.tmp_size)
        _check_size("workspace_size", self.workspace_size)
        cpus = self.cpus
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 < cpus < 1e6:
            raise InvalidOption(
                f"cpus limit {cpus!r} is not a positive number: use e.g. 1, 2 or 0.5",
                option="cpus",
            )
        pids = self.pids
        if isinstance(pids, bool) or not isinstance(pids, int) or pids <= 0:
            raise InvalidOption(
                f"pids limit {pids!r} is not a positive whole number: use e.g. 256 "
                "(docker reads 0 or -1 as no limit at all)",
                option="pids",
            )


@dataclass(frozen=True)
class ResultLimits:
    """Caps on what one execution brings back into the host process.

    Past a cap the item is replaced by a short ``[codeexec: …]`` marker and the result
    says ``truncated=True``. The executor enforces them, and the host again on what
    arrives, so a broken executor cannot grow the host past them either.

    ``output``: bytes of stdout and stderr together, in UTF-8 (the executor counts the
    bytes the code wrote, the host the UTF-8 of the text it kept).
    ``displays``: bytes of rich output per execution, counted as sent (an image counts
    its base64 text, about 4/3 of its size); the display that does not fit and every
    later one are dropped. ``value``: characters of the last expression's ``repr()``.
    ``error``: characters of the exception message and traceback together; the head
    of the traceback and its last frames are kept.
    """

    # The executor's own defaults (its constants.py, read through _shared.py).
    output: int = constants.OUTPUT_LIMIT
    displays: int = constants.DISPLAY_LIMIT
    value: int = constants.VALUE_LIMIT
    error: int = constants.ERROR_LIMIT

    def __post_init__(self) -> None:
        for name in ("output", "displays", "value", "error"):
            cap = getattr(self, name)
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
                raise CodeexecError(
                    f"ResultLimits.{name} must be a whole number of bytes >= 0, not {cap!r}"
                )


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
    engine: str = ""  # the engine's name (engines.py); route: "bridge"/"published"/"exec"
    route: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dependencies"] = list(self.dependencies)
        data["labels"] = dict(self.labels)
        return data


@dataclass(frozen=True)
class SessionRef:
    """One session container as ``docker inspect`` saw it, parsed once (``docker.py``).

    What reaching the session needs (its executor's ``address`` and ``token``) and
    the settings it was started with (``settings``: the labels ``start`` compares
    with the options it is asked for). The address cache stores these, not raw dicts.
    """

    info: SessionInfo
    running: bool = False
    address: tuple[str, int] | None = None  # the published executor port, if any
    # The executor's port on the container's bridge address, if it has one: reachable
    # only from this host when the engine is local (it skips docker-proxy).
    bridge: tuple[str, int] | None = None
    route: str = ""  # what the last connection used: "bridge", "published" or "" (none yet)
    token: str = field(default="", repr=False)
    image_id: str = ""
    engine: str = ""  # which docker engine (CLI, DOCKER_HOST, context) it runs on
    settings: Mapping[str, Any] = field(default_factory=dict)
    branch: str = ""  # a fork inside this container (docs/snapshots.md), "" for the session

    @property
    def id(self) -> str:
        return self.info.container_id

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def labels(self) -> Mapping[str, str]:
        return self.info.labels

    @property
    def status(self) -> str:
        return self.info.status

    def to_json(self) -> dict[str, Any]:
        """What the address cache keeps (the token included: its files are private)."""
        return {
            "info": self.info.to_dict(),
            "running": self.running,
            "address": list(self.address) if self.address else None,
            "bridge": list(self.bridge) if self.bridge else None,
            "route": self.route,
            "token": self.token,
            "image_id": self.image_id,
            "engine": self.engine,
            "settings": dict(self.settings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionRef:
        """The inverse of :meth:`to_json`; ``ValueError``/``TypeError``/``KeyError`` if bad."""
        info = dict(data["info"])
        info["dependencies"] = tuple(str(d) for d in info.get("dependencies") or ())
        info["labels"] = {str(k): str(v) for k, v in (info.get("labels") or {}).items()}
        address = data.get("address")
        bridge = data.get("bridge")
        return cls(
            info=SessionInfo(**info),
            running=bool(data.get("running")),
            address=(str(address[0]), int(address[1])) if address else None,
            bridge=(str(bridge[0]), int(bridge[1])) if bridge else None,
            route=str(data.get("route") or ""),
            token=str(data.get("token") or ""),
            image_id=str(data.get("image_id") or ""),
            engine=str(data.get("engine") or ""),
            settings=dict(data.get("settings") or {}),
        )


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
