"""`codeexec mcp --http`: the address and the per-request checks, without a server
(the real thing: tests/integration/test_mcp_http.py)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import Headers

from codeexec._mcp_access import Hub
from codeexec._mcp_http import Guard, allowed_hosts, parse_address
from codeexec.errors import CodeexecError
from tests.test_mcp_server import FakeRegistry


def test_addresses() -> None:
    assert parse_address("8765") == ("127.0.0.1", 8765)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("localhost:http", "1.2.3.4:0", "x:70000", ""):
        with pytest.raises(CodeexecError, match="HOST:PORT"):
            parse_address(bad)
    assert allowed_hosts("127.0.0.1", 1) == ["127.0.0.1:1", "[::1]:1", "localhost:1"]
    assert allowed_hosts("10.0.0.5", 2) == ["10.0.0.5:2"]
    assert allowed_hosts("0.0.0.0", 3) is None  # any name: the token still applies


def _guard(host: str, port: int) -> Guard:
    hub = Hub(lambda _n: FakeRegistry(), build_wait=1)
    app: Any = None
    return Guard(app, token="s3cret", hosts=allowed_hosts(host, port), hub=hub)


def _status(guard: Guard, **headers: str) -> int:
    refusal = guard.refusal(Headers({k.replace("_", "-"): v for k, v in headers.items()}))
    return 200 if refusal is None else refusal.status_code


def test_loopback_checks() -> None:
    guard, ok = _guard("127.0.0.1", 8765), {"authorization": "Bearer s3cret"}
    assert _status(guard, host="127.0.0.1:8765", **ok) == 200
    assert _status(guard, host="localhost:8765", origin="http://localhost:8765", **ok) == 200
    assert _status(guard, host="127.0.0.1:8765") == 401
    assert _status(guard, host="127.0.0.1:8765", authorization="Bearer s3cre") == 401
    assert _status(guard, host="127.0.0.1:8765", authorization="s3cret") == 401
    assert _status(guard, host="rebound.example:8765", **ok) == 421
    assert _status(guard, host="127.0.0.1:9999", **ok) == 421
    assert _status(guard, host="127.0.0.1:8765", origin="http://evil.example", **ok) == 403
    assert _status(guard, host="127.0.0.1:8765", origin="null", **ok) == 403


def test_wildcard_bind_checks_origin_against_the_host_asked_for() -> None:
    guard, ok = _guard("0.0.0.0", 8765), {"authorization": "Bearer s3cret"}
    assert _status(guard, host="build-box:8765", **ok) == 200
    assert _status(guard, host="build-box:8765", origin="http://build-box:8765", **ok) == 200
    assert _status(guard, host="build-box:8765", origin="http://evil.example", **ok) == 403
    assert _status(guard, host="build-box:8765") == 401
