"""How a cell's code, its value and its exception become what the worker sends:
the cell compiled with its last expression apart, a traceback without executor
frames, and the rich representations of an object (worker.py runs the cells).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import traceback

_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

# (method, mime type, binary?) in the order IPython uses.
REPR_METHODS = (
    ("_repr_png_", "image/png", True),
    ("_repr_jpeg_", "image/jpeg", True),
    ("_repr_svg_", "image/svg+xml", False),
    ("_repr_html_", "text/html", False),
    ("_repr_markdown_", "text/markdown", False),
    ("_repr_json_", "application/json", False),
)


def compile_cell(code: str, filename: str):
    """Compile a cell; if its last statement is an expression, return it
    separately compiled for eval (its value is the cell's value)."""
    tree = ast.parse(code, filename, "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body[-1].value)
        tree.body.pop()
    body = compile(tree, filename, "exec")
    return body, (compile(last, filename, "eval") if last is not None else None)


def _user_traceback(tb):
    """Skip executor frames: start at the first frame of a cell."""
    first = tb
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith("<cell-"):
            return tb
        tb = tb.tb_next
    # Not raised from a cell (e.g. inside our own code): keep the last frame only.
    while first is not None and first.tb_next is not None:
        first = first.tb_next
    return first


def error_info(exc: BaseException, only: bool = False) -> dict:
    try:
        evalue = str(exc)
    except Exception:
        evalue = f"<unprintable {type(exc).__name__}>"
    try:
        if only:
            lines = traceback.format_exception_only(type(exc), exc)
        else:
            te = traceback.TracebackException(type(exc), exc, _user_traceback(exc.__traceback__))
            # Our SIGINT handler's frame ends every interrupt's traceback.
            te.stack[:] = [f for f in te.stack if not f.filename.startswith(_PKG_DIR)]
            lines = list(te.format())
        tb_lines = "".join(lines).splitlines()
    except Exception:
        tb_lines = [f"{type(exc).__name__}: {evalue}"]
    return {"ename": type(exc).__name__, "evalue": evalue, "traceback": tb_lines}


def safe_repr(obj) -> str:
    try:
        return repr(obj)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        return f"<repr failed: {type(exc).__name__}: {exc}>"


def mime_bundle(obj) -> dict:
    """Rich representations of obj; every method call is guarded."""
    data = {}
    for method, mime, binary in REPR_METHODS:
        try:
            fn = getattr(obj, method, None)
            if fn is None or not callable(fn) or isinstance(obj, type):
                continue
            out = fn()
            if isinstance(out, tuple) and out:
                out = out[0]  # IPython allows (data, metadata)
            if out is None:
                continue
            if binary and isinstance(out, (bytes, bytearray)):
                out = base64.b64encode(bytes(out)).decode("ascii")
            elif isinstance(out, (bytes, bytearray)):
                out = bytes(out).decode("utf-8", "replace")
            elif mime == "application/json":
                json.dumps(out)  # must travel as JSON
            elif not isinstance(out, str):
                continue
            data[mime] = out
        except Exception:
            continue
    data["text/plain"] = safe_repr(obj)
    return data
