"""What the MCP tools share: the server class, result shapes and formatting, tool errors.

``mcp_server.py`` keeps the tools and their docstrings; this module turns an
``ExecResult`` into text, image content and structured output, a ``CodeexecError``
or a rejected argument into the one-line ``ToolError`` the model reads.
``_mcp_access.py`` runs the blocking session work. Only the ``_mcp*`` modules and
``mcp_server.py`` import the ``mcp`` SDK.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, get_args

from annotated_types import Le
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import ValidationError
from typing_extensions import TypedDict  # pydantic needs it for nested ones before 3.12

from ._bounds import MCP_LIMITS
from .errors import (
    CodeexecError,
    ContainerStartError,
    FileTransferError,
    ImageBuildError,
    NoSuchSession,
    SessionBusy,
)
from .models import ExecResult
from .registry import SessionRow

log = logging.getLogger("codeexec.mcp")

MAX_CODE_BYTES = 2**20  # one execute_code call; bigger programs go in with write_file
MAX_TIMEOUT = 300.0  # the largest execute_code timeout unless serve(max_timeout=) says
OUTPUT_LIMIT = MCP_LIMITS.output  # characters kept per call: it goes into the model's context
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
_F = TypeVar("_F", bound=Callable[..., Any])


# -- the shapes of structured results (the tools' output schemas) -------------------------


class ExecErrorOutput(TypedDict):
    ename: str
    evalue: str
    traceback: list[str]


class ExecOutput(TypedDict):
    """The outcome of running code; the text content says the same for reading."""

    session: str
    status: Literal["ok", "error", "timeout", "interrupted"]
    stdout: str
    stderr: str
    value: str | None
    error: ExecErrorOutput | None
    duration_ms: float
    truncated: bool
    restarted: bool
    rolled_back: bool
    displays: int
    display_mime_types: list[list[str]]
    started_session: bool


class SessionsOutput(TypedDict):
    current: str
    sessions: list[SessionRow]


# -- the server ---------------------------------------------------------------------------


class CodeexecMCP(MCPServer):
    """``MCPServer`` with one-line argument errors and only the capabilities it serves."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, subscriptions=False, **kwargs)
        handlers = self._lowlevel_server._request_handlers
        for method in ("resources/list", "resources/templates/list", "resources/read"):
            handlers.pop(method, None)  # no resources: no ``resources`` capability

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(argument_error(exc.__cause__)) from exc.__cause__
            raise


class ToolSet:
    """Module-level tools, registered in order with ``add_to(server)``.

    ``@tools.tool(title, read_only=..., ...)`` marks a module-level function as a
    tool with its title and annotations (what a client may show or ask before
    calling it) and turns a ``CodeexecError`` into a ``ToolError`` (``tool_errors``).
    """

    def __init__(self) -> None:
        self._tools: list[tuple[Callable[..., Any], dict[str, Any]]] = []

    def tool(
        self,
        title: str,
        *,
        structured: bool = False,
        read_only: bool = False,
        destructive: bool = False,
        idempotent: bool = False,
        open_world: bool = False,
    ) -> Callable[[_F], _F]:
        hints = ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=destructive,
            idempotent_hint=idempotent,
            open_world_hint=open_world,
        )
        kwargs: dict[str, Any] = {"title": title, "annotations": hints}
        if structured:
            kwargs["structured_output"] = True

        def register(fn: _F) -> _F:
            wrapped = tool_errors(fn)
            self._tools.append((wrapped, kwargs))
            return wrapped

        return register

    def add_to(
        self, server: MCPServer, maxima: Mapping[str, Mapping[str, float]] | None = None
    ) -> None:
        """Register every tool with ``server``; ``maxima[tool][param]`` replaces the
        maximum of that parameter's schema (a setting of one server, such as
        ``execute_code``'s largest ``timeout``)."""
        for fn, kwargs in self._tools:
            for param, maximum in (maxima or {}).get(fn.__name__, {}).items():
                fn = with_maximum(fn, param, maximum)
            server.add_tool(fn, **kwargs)


def with_maximum(fn: Callable[..., Any], param: str, maximum: float) -> Callable[..., Any]:
    """``fn`` whose ``param`` (``Annotated[..., Field(le=...)]``) has ``maximum`` as ``le``."""
    signature = inspect.signature(fn)
    base, info = get_args(signature.parameters[param].annotation)[:2]
    info = copy.copy(info)
    info.metadata = [Le(maximum) if isinstance(m, Le) else m for m in info.metadata]
    bound = signature.parameters[param].replace(annotation=Annotated[base, info])

    @functools.wraps(fn)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    params = [bound if p.name == param else p for p in signature.parameters.values()]
    bounded.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return bounded


def argument_error(exc: ValidationError) -> str:
    """pydantic's report as one line that names each rejected parameter."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        if error["type"] == "missing":
            parts.append(f"missing argument {where!r}")
        else:
            parts.append(f"argument {where!r}: {error['msg']}")
    return "; ".join(parts) + " (see the tool's input schema)"


# -- errors and formatting ----------------------------------------------------------------


def decode_content(content: str, encoding: str) -> bytes:
    """``write_file``'s content as bytes: UTF-8 text, or base64."""
    if encoding != "base64":
        return content.encode("utf-8")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ToolError(
            f"content is not valid base64 ({exc}); send text with encoding='utf-8'"
        ) from None


def encode_content(data: bytes, encoding: str, path: str) -> str:
    """``read_file``'s answer: the file as UTF-8 text, or base64."""
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(
            f"{path} is not UTF-8 text; call read_file with encoding='base64'"
        ) from None


def check_code_size(code: str) -> None:
    size = len(code.encode("utf-8", "replace"))
    if size > MAX_CODE_BYTES:
        raise ToolError(
            f"the code is {size} bytes, over the {MAX_CODE_BYTES} byte limit: "
            "write it to a file with write_file and run it with exec(open(...)"
            ".read()), or send it in smaller pieces"
        )


def tool_error(exc: CodeexecError) -> ToolError:
    message = exc.message
    if isinstance(exc, ImageBuildError) and exc.log_tail:
        message += "\n--- end of the build log ---\n" + exc.log_tail[-3000:]
    elif isinstance(exc, ContainerStartError) and exc.container_log:
        message += "\n--- end of the container log ---\n" + exc.container_log[-2000:]
    elif isinstance(exc, FileTransferError) and exc.code == "too_large":
        message += "; process it inside the session with execute_code instead"
    elif isinstance(exc, SessionBusy):
        message += " (here: wait for that call to return; its timeout bounds it)"
    elif isinstance(exc, NoSuchSession) and "start_code_executer" not in message:
        message += " (here: call start_code_executer, or list_sessions to see what runs)"
    return ToolError(message)


def tool_errors(fn: _F) -> _F:
    """Turn a ``CodeexecError`` into a ToolError: the SDK shows only those to the model."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except CodeexecError as exc:
            raise tool_error(exc) from exc

    wrapper.__doc__ = inspect.cleandoc(fn.__doc__ or "")  # the model reads it: no indents
    return wrapper  # type: ignore[return-value]


def exec_result(
    result: ExecResult, *, name: str, note: str = "", max_timeout: float
) -> CallToolResult:
    parts = [note] if note else []
    parts.append(f"status: {result.status} ({result.duration_ms:.0f} ms, session {name!r})")
    if result.stdout:
        parts.append("stdout:\n" + result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append("stderr:\n" + result.stderr.rstrip("\n"))
    if result.value is not None:
        parts.append("value: " + result.value)
    if result.error is not None:
        parts.append("error:\n" + result.error.format())
    if result.status == "timeout":
        parts.append(
            "note: the code ran past its timeout and was interrupted; the variables "
            f"it set so far are kept. Pass a larger timeout (at most {max_timeout:.0f} "
            "s) or split the work into several calls."
        )
    if result.truncated:
        parts.append(
            "note: output was truncated (past the limits on output, images, value or "
            "traceback); write large output to a file and read parts of it with "
            "read_file, or print a summary."
        )
    if result.rolled_back:
        parts.append("note: rolled back: the session is as it was before this code ran.")
    if result.restarted:
        parts.append(
            "note: the Python process was restarted: every variable and import is "
            "gone. Run your setup code again."
        )
    content: list[ContentBlock] = []
    for index, display in enumerate(result.displays, start=1):
        data = display.data
        image = next((m for m in _IMAGE_TYPES if isinstance(data.get(m), bytes)), None)
        if image is not None:
            raw = data[image]
            assert isinstance(raw, bytes)
            parts.append(f"display {index}: {image} (attached as an image)")
            content.append(
                ImageContent(
                    type="image", mime_type=image, data=base64.b64encode(raw).decode("ascii")
                )
            )
            continue
        mime = next(
            (
                m
                for m in ("text/markdown", "text/html", "text/plain")
                if isinstance(data.get(m), str)
            ),
            None,
        )
        text = data.get(mime, "") if mime else ""
        if mime is None or (mime == "text/plain" and text == result.value):
            continue  # the value above already shows it
        parts.append(f"display {index} ({mime}):\n{str(text)[:OUTPUT_LIMIT]}")
    return structured(
        "\n\n".join(parts), dict(exec_output(result, name, bool(note))), images=content
    )


def structured(
    summary: str, output: dict[str, Any], *, images: Sequence[ContentBlock] = ()
) -> CallToolResult:
    """A summary the model reads, images, and the structured output again as JSON text
    (the MCP spec's advice for clients that do not read ``structuredContent``)."""
    return CallToolResult(
        content=[
            TextContent(type="text", text=summary),
            *images,
            TextContent(type="text", text=json.dumps(output, ensure_ascii=False)),
        ],
        structured_content=output,
    )


def sessions_result(output: SessionsOutput) -> CallToolResult:
    rows = output["sessions"]
    lines = [f"current session: {output['current']}; {len(rows)} session(s)"]
    lines += [
        f"- {r['name']}: {r['status']}, dependencies {', '.join(r['dependencies']) or 'none'}"
        + (" (used here)" if r["used_here"] else "")
        for r in rows
    ]
    return structured("\n".join(lines), dict(output))


def exec_output(result: ExecResult, name: str, started: bool) -> ExecOutput:
    """The structured form of an execution's result (``execute_code``'s output schema)."""
    error = result.error
    return ExecOutput(
        session=name,
        status=result.status,
        stdout=result.stdout,
        stderr=result.stderr,
        value=result.value,
        error=None
        if error is None
        else ExecErrorOutput(
            ename=error.ename, evalue=error.evalue, traceback=list(error.traceback)
        ),
        duration_ms=result.duration_ms,
        truncated=result.truncated,
        restarted=result.restarted,
        rolled_back=result.rolled_back,
        displays=len(result.displays),
        display_mime_types=[list(d.mime_types) for d in result.displays],
        started_session=started,
    )
