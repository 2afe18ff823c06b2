"""_engineapi.py: when the engine API stands in for the docker CLI, the requests it
makes and how its answers map (a fake engine on a unix socket; no Docker needed)."""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import _engineapi
from codeexec._engineapi import (
    DEFAULT_SOCKET,
    Reply,
    Unusable,
    ps_rows,
    ps_url,
    rename_url,
    socket_path,
)
from codeexec.docker import Docker
from codeexec.errors import DockerError, NoSuchSession

FAKE = str(Path(__file__).with_name("fake_docker.py"))


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "CODEEXEC_ENGINE_API"):
        monkeypatch.delenv(var, raising=False)
    _engineapi.forget()
    yield
    _engineapi.forget()


def _config(tmp_path: Path, current: object) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": current}))
    return {"DOCKER_CONFIG": str(tmp_path)}


# -- which engine: the API only where it is certainly the CLI's ----------------------


@pytest.mark.parametrize(
    ("host", "context", "env", "expected"),
    [
        ("", "", {}, DEFAULT_SOCKET),
        (
            "",
            "",
            {"DOCKER_HOST": "unix:///run/user/1000/docker.sock"},
            "/run/user/1000/docker.sock",
        ),
        ("", "", {"DOCKER_HOST": "tcp://10.0.0.5:2376"}, None),
        ("", "", {"DOCKER_HOST": "ssh://me@big-host"}, None),
        ("", "", {"DOCKER_HOST": "fd://"}, None),
        ("", "", {"DOCKER_HOST": "unix://"}, None),
        ("", "", {"DOCKER_CONTEXT": "remote"}, None),
        ("", "", {"DOCKER_CONTEXT": "default"}, DEFAULT_SOCKET),
        ("", "", {"DOCKER_CONTEXT": "remote", "DOCKER_HOST": "unix:///a.sock"}, None),
        ("unix:///b.sock", "", {"DOCKER_CONTEXT": "remote"}, "/b.sock"),  # -H wins
        ("tcp://10.0.0.5:2376", "", {}, None),
        ("", "remote", {}, None),
        ("", "default", {"DOCKER_HOST": "unix:///c.sock"}, "/c.sock"),
        ("", "default", {"DOCKER_CONTEXT": "remote"}, DEFAULT_SOCKET),  # --context wins
        ("unix:///b.sock", "default", {}, DEFAULT_SOCKET),  # and the CLI gets no --host
        ("", "", {"DOCKER_CONTEXT": "", "DOCKER_HOST": ""}, DEFAULT_SOCKET),  # empty: unset
    ],
)
def test_the_socket_is_the_one_the_cli_would_use_or_none(
    host: str, context: str, env: dict[str, str], expected: str | None, tmp_path: Path
) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path), **env}  # no config.json: no current context
    assert socket_path(host, context, env) == expected


def test_a_current_context_in_the_cli_config_means_the_cli(tmp_path: Path) -> None:
    env = _config(tmp_path, "remote")
    assert socket_path("", "", env) is None
    assert socket_path("unix:///b.sock", "", env) == "/b.sock"  # an explicit host wins
    env = _config(tmp_path, "default")  # `docker context use default`: read again at once
    os.utime(tmp_path / "config.json", ns=(1, 1))  # even within one mtime tick
    assert socket_path("", "", env) == DEFAULT_SOCKET
    (tmp_path / "config.json").write_text("{not json")
    assert socket_path("", "", env) is None  # unreadable: the CLI decides
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}}))
    assert socket_path("", "", env) == DEFAULT_SOCKET


def test_codeexec_engine_api_0_turns_it_off() -> None:
    assert _engineapi.enabled({})
    assert _engineapi.enabled({"CODEEXEC_ENGINE_API": "1"})
    for off in ("0", "false", "no", "off", " OFF "):
        assert not _engineapi.enabled({"CODEEXEC_ENGINE_API": off})


def _binary(tmp_path: Path, name: str, head: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(head + b"\0" * 64)
    path.chmod(0o755)
    return str(path)


def test_only_a_native_docker_cli_lets_the_api_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    native = _binary(tmp_path, "docker", b"\x7fELF")
    assert Docker(native)._api_socket() == DEFAULT_SOCKET
    assert Docker(native, host="unix:///x.sock")._api_socket() == "/x.sock"
    assert Docker(native, host="tcp://127.0.0.1:2375")._api_socket() is None
    assert Docker(native, context="remote")._api_socket() is None
    assert Docker(_binary(tmp_path, "podman", b"\x7fELF"))._api_socket() is None
    assert Docker(_binary(tmp_path, "wrapper", b"#!/bin/sh"))._api_socket() is None
    assert Docker(FAKE)._api_socket() is None  # tests/fake_docker.py: a script
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert Docker(native)._api_socket() is None
    monkeypatch.setenv("DOCKER_HOST", "unix:///y.sock")
    assert Docker(native)._api_socket() == "/y.sock"
    monkeypatch.setenv("CODEEXEC_ENGINE_API", "0")
    assert Docker(native)._api_socket() is None


# -- requests and answers -------------------------------------------------------------


def test_requests_are_the_ones_the_cli_makes() -> None:
    assert rename_url("abc", "codeexec-x-1a2b3c") == "/containers/abc/rename?name=codeexec-x-1a2b3c"
    assert rename_url("a/b", "n m") == "/containers/a%2Fb/rename?name=n+m"
    assert ps_url({"codeexec.managed": "1"}, all=False) == (
        "/containers/json?filters=%7B%22label%22%3A%5B%22codeexec.managed%3D1%22%5D%7D"
    )
    assert ps_url({"a": "", "b": "2"}, all=True) == (
        "/containers/json?filters=%7B%22label%22%3A%5B%22a%22%2C%22b%3D2%22%5D%7D&all=1"
    )


def test_listed_containers_become_the_cli_format_rows() -> None:
    data = [
        {"Id": "1" * 64, "Names": ["/codeexec-x-1a2b3c"], "Labels": {"codeexec.session": "x"}},
        {"Id": "2" * 64, "Names": ["/codeexec_pool_ab", "/other/link"], "Labels": None},
    ]
    assert ps_rows(data, ("codeexec.session", "codeexec.pool")) == [
        ["1" * 64, "codeexec-x-1a2b3c", "x", ""],
        ["2" * 64, "codeexec_pool_ab,other/link", "", ""],
    ]
    for bad in ({"message": "x"}, [{"Names": []}], ["x"]):
        with pytest.raises(Unusable):
            ps_rows(bad, ())


def test_an_error_reply_is_the_clis_stderr_and_anything_else_unusable() -> None:
    said = Reply(409, b'{"message":"Conflict. The container name is already in use"}')
    assert (
        said.error()
        == "Error response from daemon: Conflict. The container name is already in use\n"
    )
    for odd in (Reply(500, b"<html>"), Reply(500, b'{"x": 1}'), Reply(204, b"")):
        with pytest.raises(Unusable):
            odd.error()
    assert Reply(204, b"").json() is None


# -- a fake engine on a unix socket --------------------------------------------------


class _Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    replies: dict[tuple[str, str], tuple[int, dict[str, str], bytes]]
    seen: list[str]
    hang: threading.Event


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Engine

    def _answer(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")
        if self.path.endswith("/hang"):
            self.server.hang.wait(10)
        status, headers, body = self.server.replies.get(
            (self.command, self.path), (404, {}, b'{"message":"page not found"}')
        )
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


PING = ("GET", "/_ping")
OK_PING = (200, {"Api-Version": "1.41"}, b"OK")


@pytest.fixture
def engine() -> Iterator[tuple[_Engine, str]]:
    folder = tempfile.mkdtemp(prefix="cx-api-")  # short: a socket path has ~100 bytes
    path = os.path.join(folder, "docker.sock")
    server = _Engine(path, _Handler)
    server.replies, server.seen, server.hang = {PING: OK_PING}, [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, path
    server.hang.set()
    server.shutdown()
    server.server_close()
    os.unlink(path)
    os.rmdir(folder)


def _docker(path: str, monkeypatch: pytest.MonkeyPatch) -> Docker:
    """The fake CLI (its calls logged), with the fake engine as its API socket."""
    docker = Docker(FAKE)
    monkeypatch.setattr(docker, "_api_socket", lambda: path)
    return docker


def _cli_calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()]


@pytest.fixture
def cli_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    return log


def test_a_rename_and_a_lookup_go_to_the_api_and_not_the_cli(
    engine: tuple[_Engine, str], cli_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path = engine
    rename = ("POST", "/v1.41/containers/c1/rename?name=codeexec-x-1a2b3c")
    listing = ("GET", "/v1.41" + ps_url({"codeexec.managed": "1"}, all=False))
    rows = [
        {"Id": "c1", "Names": ["/codeexec-x-1a2b3c"], "Labels": {"codeexec.pool": "1"}},
        {"Id": "c2", "Names": ["/codeexec-y-000000"], "Labels": {"codeexec.session": "y"}},
        {"Id": "c3", "Names": ["/codeexec_pool_ff"], "Labels": {"codeexec.pool": "1"}},
    ]
    server.replies.update({rename: (204, {}, b""), listing: (200, {}, json.dumps(rows).encode())})
    docker = _docker(path, monkeypatch)
    docker.rename("c1", "codeexec-x-1a2b3c")
    assert docker.session_candidates("x") == ["c1"]
    assert docker.session_candidates("y") == ["c2"]
    assert server.seen == ["GET /_ping", " ".join(rename), " ".join(listing), " ".join(listing)]
    assert _cli_calls(cli_log) == []


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (409, 'Conflict. The container name "/codeexec-x-1" is already in use', DockerError),
        (404, "No such container: c1", NoSuchSession),
        (500, "Error when allocating new name", DockerError),
    ],
)
def test_the_engines_errors_raise_what_the_cli_would(
    status: int, message: str, error: type[DockerError], engine: tuple[_Engine, str],
    cli_log: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    server, path = engine
    body = json.dumps({"message": message}).encode()
    server.replies[("POST", "/v1.41/containers/c1/rename?name=codeexec-x-1")] = (status, {}, body)
    with pytest.raises(error) as raised:
        _docker(path, monkeypatch).rename("c1", "codeexec-x-1")
    assert type(raised.value) is error
    # The CLI's own mapping of the same daemon answer (stderr "Error response from daemon: …").
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "rename")
    monkeypatch.setenv("FAKE_DOCKER_STDERR", f"Error response from daemon: {message}\n")
    with pytest.raises(DockerError) as by_cli:
        Docker(FAKE).rename("c1", "codeexec-x-1")
    assert type(by_cli.value) is type(raised.value)
    assert raised.value.message == by_cli.value.message
    assert raised.value.argv == by_cli.value.argv
    assert _cli_calls(cli_log) == [["rename", "c1", "codeexec-x-1"]]  # only the CLI's own


@pytest.mark.parametrize(
    "trouble", ["not json", "no socket", "podman", "old engine", "ping fails", "timeout"]
)
def test_no_answer_the_cli_would_give_means_the_cli_is_asked(
    trouble: str, engine: tuple[_Engine, str], cli_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path = engine
    url = "/containers/c1/rename?name=codeexec-x-1"
    server.replies[("POST", "/v1.41" + url)] = (500, {}, b"<html>oops</html>")
    if trouble == "no socket":
        path = path + ".gone"
    elif trouble == "podman":
        server.replies[PING] = (200, {"Api-Version": "1.41", "Libpod-Api-Version": "4.3.1"}, b"OK")
    elif trouble == "old engine":
        server.replies[PING] = (200, {"Api-Version": "1.23"}, b"OK")
    elif trouble == "ping fails":
        server.replies[PING] = (500, {}, b"")
    elif trouble == "timeout":
        monkeypatch.setattr(_engineapi, "MAX_TIMEOUT", 0.3)
        url = "/hang"
    docker = _docker(path, monkeypatch)
    assert docker._api("POST", url, ["rename"], what="x") is _engineapi.NO_ANSWER
    docker.rename("c1", "codeexec-x-1")  # the fake CLI answers: success
    assert _cli_calls(cli_log) == [["rename", "c1", "codeexec-x-1"]]


def test_the_api_version_is_asked_once_per_socket(
    engine: tuple[_Engine, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path = engine
    server.replies[("GET", "/v1.41/containers/json")] = (200, {}, b"[]")
    for _ in range(3):
        assert _engineapi.call(path, "GET", "/containers/json", 5.0).json() == []
    assert server.seen.count("GET /_ping") == 1


def test_a_listing_is_inspected_through_the_api_and_a_vanished_container_left_out(
    engine: tuple[_Engine, str], cli_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path = engine
    fixture = Path(__file__).with_name("fixtures").joinpath("inspect.json").read_text()
    (data,) = json.loads(fixture)
    listing = ("GET", "/v1.41" + ps_url({"codeexec.managed": "1"}, all=True))
    rows = [{"Id": data["Id"], "Names": ["/x"]}, {"Id": "gone", "Names": ["/y"]}]
    server.replies.update({
        listing: (200, {}, json.dumps(rows).encode()),
        ("GET", f"/v1.41/containers/{data['Id']}/json"): (200, {}, json.dumps(data).encode()),
        ("GET", "/v1.41/containers/gone/json"): (404, {}, b'{"message":"No such container: gone"}'),
    })  # fmt: skip
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_PS", f"{data['Id']}\n")
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_CONTAINER", fixture)
    docker = _docker(path, monkeypatch)
    (by_api,) = docker.ps_inspect({"codeexec.managed": "1"})
    assert _cli_calls(cli_log) == []
    (by_cli,) = Docker(FAKE).ps_inspect({"codeexec.managed": "1"})  # the same JSON, by the CLI
    assert by_api == by_cli and by_api.name == "analysis"
    # Any other answer to an inspect: the CLI inspects them all (the API listed them).
    server.replies[("GET", "/v1.41/containers/gone/json")] = (500, {}, b'{"message":"boom"}')
    (again,) = docker.ps_inspect({"codeexec.managed": "1"})
    assert again == by_cli
    calls = [c[:2] for c in _cli_calls(cli_log)]
    assert calls == [["ps", "--quiet"], ["container", "inspect"], ["container", "inspect"]]
    assert _cli_calls(cli_log)[-1] == ["container", "inspect", data["Id"], "gone"]


def test_an_image_id_through_the_api_none_when_missing_else_the_cli(
    engine: tuple[_Engine, str], cli_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path = engine
    here = ("GET", "/v1.41/images/localhost:5000/team/base:1/json")
    server.replies.update({
        here: (200, {}, b'{"Id": "sha256:abc", "RepoTags": []}'),
        ("GET", "/v1.41/images/nope:1/json"): (404, {}, b'{"message":"No such image: nope:1"}'),
        ("GET", "/v1.41/images/odd:1/json"): (404, {}, b'{"message":"page not found"}'),
    })  # fmt: skip
    docker = _docker(path, monkeypatch)
    assert docker.image_id("localhost:5000/team/base:1") == "sha256:abc"
    assert docker.image_id("nope:1") is None
    assert _cli_calls(cli_log) == []
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_IMAGE", "sha256:fromcli\n")
    assert docker.image_id("odd:1") == "sha256:fromcli"  # an unexpected 404: the CLI's answer
    assert _cli_calls(cli_log) == [["image", "inspect", "--format", "{{.Id}}", "odd:1"]]


def test_a_reply_is_read_whole_and_anything_odd_is_unusable() -> None:
    ok = b"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK"
    assert _engineapi._parse(ok) == (200, {"api-version": "1.41", "content-length": "2"}, b"OK")
    assert _engineapi._parse(b"HTTP/1.1 204 No Content\r\n\r\n") == (204, {}, b"")
    for odd in (
        b"",
        b"SSH-2.0-OpenSSH\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nOK",  # cut short
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n0\r\n\r\n",
        b"HTTP/1.0 abc OK\r\n\r\n",
    ):
        with pytest.raises(Unusable):
            _engineapi._parse(odd)


def test_each_configured_engine_is_judged_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codeexec import engines

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("CODEEXEC_DOCKER", _binary(tmp_path, "docker", b"\x7fELF"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///env.sock")
    configured = engines.parse("a=default, b=unix:///b.sock, c=ssh://me@big, d=lab, e=tcp://h:2376")
    assert {e.name: e._api_socket() for e in configured} == {
        "a": "/env.sock",  # the default context: DOCKER_HOST's engine
        "b": "/b.sock",
        "c": None,
        "d": None,
        "e": None,
    }


@pytest.mark.parametrize(
    "answer",
    [(500, b'{"message":"boom"}'), (200, b'{"message":"not a list"}'), (200, b'[{"Names":[]}]')],
)
def test_a_listing_the_cli_would_not_print_is_asked_of_the_cli(
    answer: tuple[int, bytes], engine: tuple[_Engine, str], cli_log: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    server, path = engine
    listing = ("GET", "/v1.41" + ps_url({"codeexec.managed": "1"}, all=False))
    server.replies[listing] = (answer[0], {}, answer[1])
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_PS", "c9\tcodeexec-x-000000\tx\t\n")
    assert _docker(path, monkeypatch).session_candidates("x") == ["c9"]
    assert [c[0] for c in _cli_calls(cli_log)] == ["ps"]
