"""One source for what the host and the executor must agree on (docs/architecture.md).

``executor_image/codeexec_executor/constants.py`` defines each shared value once; the
executor imports it and the host reads the same file (``codeexec/_shared.py``). These
tests check that every host name and its executor twin agree, that the file stays
plain enough for the host to read, and that no module grows a private copy again.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import ResultLimits, _bounds, _dockerargs, _shared, _transfer, client, protocol

ROOT = Path(__file__).resolve().parent.parent
EXECUTOR = ROOT / "executor_image" / "codeexec_executor"
sys.path.insert(0, str(ROOT / "executor_image"))

from codeexec_executor import (  # noqa: E402
    bounds,
    constants,
    framing,
    handshake,
    ops,
    relay,
    server,
    worker,
)


def public(module: object) -> dict[str, object]:
    return {k: v for k, v in vars(module).items() if k.isupper()}


def test_the_host_reads_the_executors_own_file() -> None:
    assert Path(_shared.constants.__file__ or "") == EXECUTOR / "constants.py"
    assert public(_shared.constants) == public(constants)
    assert len(public(constants)) >= 15


def test_the_host_splits_cells_with_the_executors_line_scanner() -> None:
    """One scanner of strings, brackets and continuations serves both sides, so a
    `%pip` line the host takes out is one the executor would also see as a line."""
    from codeexec_executor import notebook

    from codeexec import _cells

    assert Path(_shared.linescan.__file__ or "") == EXECUTOR / "linescan.py"
    assert _cells.linescan is _shared.linescan
    assert notebook.scan_line.__module__ == "codeexec_executor.linescan"
    state: list = [None, 0, False]
    _shared.linescan.scan_line("x = f(" + '"' * 3 + "(\n", state)
    assert state == ['"' * 3, 1, False]


def test_the_constants_file_is_plain_assignments() -> None:
    # The host executes it: no imports, calls or other statements, only literals and
    # arithmetic on names defined above them.
    tree = ast.parse((EXECUTOR / "constants.py").read_text(encoding="utf-8"))
    for node in tree.body[1:]:
        assert isinstance(node, ast.Assign), ast.dump(node)
        for sub in ast.walk(node.value):
            assert isinstance(
                sub, (ast.Constant, ast.BinOp, ast.Name, ast.Load, ast.Mult, ast.Add)
            ), ast.dump(sub)


def test_protocol_pairs_agree() -> None:
    assert protocol.PROTOCOL_VERSION == handshake.PROTOCOL == ops.PROTOCOL == 2
    assert protocol.DEFAULT_FRAME_LIMIT == framing.DEFAULT_FRAME_LIMIT == 64 * 2**20
    assert protocol.NONCE_BYTES == handshake.NONCE_BYTES
    assert protocol.PROOF_BYTES == handshake.PROOF_BYTES
    nonces = bytes(range(32)), bytes(range(32, 64))
    for side, label in (("server", handshake.SERVER_LABEL), ("client", handshake.CLIENT_LABEL)):
        assert protocol.proof("t", side, *nonces) == handshake.proof(b"t", label, b"".join(nonces))


def test_the_host_handshake_fits_under_the_pre_auth_frame_limit() -> None:
    nonce, proof = b"\xff" * protocol.NONCE_BYTES, b"\xff" * protocol.PROOF_BYTES
    for frame in (protocol.hello(nonce), protocol.auth(proof)):
        assert len(protocol.encode(frame)) < server.HELLO_FRAME_LIMIT // 100


def test_result_limit_defaults_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OUTPUT", "DISPLAY", "VALUE", "ERROR"):
        monkeypatch.delenv(f"CODEEXEC_{name}_LIMIT", raising=False)
    monkeypatch.setattr(bounds, "_defaults", {})  # read once per process: read again
    limits = ResultLimits()
    assert bounds.defaults() == {
        "output_limit": limits.output,
        "display_limit": limits.displays,
        "value_limit": limits.value,
        "error_limit": limits.error,
    }
    assert (limits.output, limits.displays, limits.value, limits.error) == (
        16 * 2**20,
        32 * 2**20,
        2**20,
        2**20,
    )
    assert _bounds.DISPLAY_OVERHEAD == bounds.DISPLAY_OVERHEAD
    assert _bounds.ENAME_LIMIT == bounds.ENAME_LIMIT
    assert _bounds._HEAD_LINES == bounds.HEAD_LINES


def test_supervisor_defaults_agree_with_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "HOST", "HELLO_TIMEOUT", "INTERRUPT_GRACE", "FRAME_LIMIT"):
        monkeypatch.delenv(f"CODEEXEC_{name}", raising=False)
    supervisor = server.Server("token")
    try:
        assert supervisor.port == _dockerargs.EXECUTOR_PORT == 8888
        assert supervisor.runner.grace == client.INTERRUPT_GRACE
        assert supervisor.hello_timeout == constants.HELLO_TIMEOUT
        assert supervisor.frame_limit == protocol.DEFAULT_FRAME_LIMIT
    finally:
        supervisor.sel.close()


def test_container_layout_agrees() -> None:
    assert _transfer.SITE_DIR == constants.SITE_DIR
    # The worker read its environment at import; CODEEXEC_SITE_DIR overrides the default.
    assert worker.SITE_DIR == os.environ.get("CODEEXEC_SITE_DIR", constants.SITE_DIR)
    assert relay.EXECUTOR_PORT == _dockerargs.EXECUTOR_PORT
    assert _dockerargs.executor_command("serve")[2] == constants.EXECUTOR_MAIN
    assert Path(constants.EXECUTOR_MAIN).parts[-2:] == ("codeexec_executor", "__main__.py")
    # The Dockerfile is not Python: it spells the same values, checked here.
    dockerfile = (ROOT / "executor_image" / "Dockerfile.template").read_text(encoding="utf-8")
    uid = _dockerargs.EXECUTOR_UID
    assert f"USER {uid}:{uid}" in dockerfile and f"--uid {uid} " in dockerfile
    assert f"EXPOSE {_dockerargs.EXECUTOR_PORT}\n" in dockerfile
    assert f'CMD ["python", "-s", "{constants.EXECUTOR_MAIN}", "serve"]' in dockerfile
    assert f"COPY codeexec_executor/ {Path(constants.EXECUTOR_MAIN).parent}/" in dockerfile


def _literals(path: Path) -> Iterator[object]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            yield node.value


def test_no_module_keeps_its_own_copy() -> None:
    # The distinctive shared values (strings, bytes, large literal numbers) appear as
    # literals in constants.py only: a copy elsewhere could drift unseen.
    tree = ast.parse((EXECUTOR / "constants.py").read_text(encoding="utf-8"))
    distinctive = {
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and (isinstance(node.value.value, (str, bytes)) or node.value.value >= 1000)
    }
    assert {8888, 10001, constants.SITE_DIR, constants.SERVER_PROOF_LABEL} <= distinctive
    sources = [*(ROOT / "codeexec").rglob("*.py"), *EXECUTOR.glob("*.py")]
    copies = [
        (path.relative_to(ROOT).as_posix(), value)
        for path in sources
        if path.name != "constants.py"
        for value in _literals(path)
        if type(value) in (str, bytes, int) and value in distinctive
    ]
    assert copies == []
