"""Contract tests for the in-container executor (docs/protocol.md), run as a
local process: no docker. Driven through raw sockets, not codeexec.client."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

EXECUTOR_DIR = Path(__file__).resolve().parent.parent / "executor_image"
# The executor must run on Python 3.9+: point this at another interpreter to check.
EXECUTOR_PYTHON = os.environ.get("CODEEXEC_TEST_EXECUTOR_PYTHON", sys.executable)
DEADLINE = 20.0


def _frame(obj) -> bytes:
    body = json.dumps(obj).encode("utf-8")
    return struct.pack(">I", len(body)) + body


# The handshake's proofs, written from docs/protocol.md rather than imported from
# either side, so a change on both sides that departs from the spec fails here.
SERVER_LABEL = b"codeexec-v2 server proof\0"
CLIENT_LABEL = b"codeexec-v2 client proof\0"


def _proof(token: str, label: bytes, client_nonce: bytes, server_nonce: bytes) -> str:
    digest = hmac.new(token.encode(), label + client_nonce + server_nonce, hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def _hello(nonce: bytes = b"") -> dict:
    nonce = nonce or secrets.token_bytes(32)
    return {"op": "hello", "protocol": 2, "nonce": base64.b64encode(nonce).decode()}


OPEN_CLIENTS: list = []


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buf = b""
        OPEN_CLIENTS.append(self)

    def close(self) -> None:
        self.sock.close()

    def send(self, obj) -> None:
        self.sock.sendall(_frame(obj))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, n: int, deadline: float) -> bytes | None:
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv(self, timeout: float = DEADLINE):
        """Next frame, or None at EOF."""
        deadline = time.monotonic() + timeout
        header = self._read(4, deadline)
        if header is None:
            return None
        (length,) = struct.unpack(">I", header)
        body = self._read(length, deadline)
        assert body is not None, "EOF inside a frame"
        return json.loads(body)

    def request(self, obj):
        self.send(obj)
        return self.recv()

    def challenge(self, token: str):
        """Send a hello, check the server's proof; return (client nonce, server nonce)."""
        client_nonce = secrets.token_bytes(32)
        answer = self.request(_hello(client_nonce))
        assert answer["type"] == "challenge" and answer["protocol"] == 2, answer
        server_nonce = base64.b64decode(answer["nonce"])
        assert len(server_nonce) == 32
        expected = _proof(token, SERVER_LABEL, client_nonce, server_nonce)
        assert hmac.compare_digest(answer["proof"], expected), "the server's proof is wrong"
        return client_nonce, server_nonce

    def handshake(self, token: str):
        """The whole handshake; returns the server's answer to the auth."""
        client_nonce, server_nonce = self.challenge(token)
        proof = _proof(token, CLIENT_LABEL, client_nonce, server_nonce)
        return self.request({"op": "auth", "proof": proof})

    def exec(self, code: str, id: str = "c", **fields):
        """Run code; return (events before the result, result)."""
        self.send({"op": "exec", "id": id, "code": code, **fields})
        return self.collect(id)

    def collect(self, id: str):
        events = []
        while True:
            frame = self.recv()
            assert frame is not None, "connection closed before the result"
            if frame.get("type") == "result" and frame.get("id") == id:
                return events, frame
            events.append(frame)

    def wait_stream(self, needle: str) -> list:
        seen, events = "", []
        while needle not in seen:
            frame = self.recv()
            assert frame is not None
            events.append(frame)
            if frame["type"] == "stream":
                seen += frame["text"]
        return events


def _stdout(events, name: str = "stdout") -> str:
    return "".join(e["text"] for e in events if e["type"] == "stream" and e["name"] == name)


class Executor:
    def __init__(self, cwd: Path, **env) -> None:
        self.token = secrets.token_hex(16)
        full_env = dict(os.environ)
        full_env.update(
            {
                "PYTHONPATH": str(EXECUTOR_DIR),
                "CODEEXEC_TOKEN": self.token,
                "CODEEXEC_PORT": "0",
                "CODEEXEC_HOST": "127.0.0.1",
                "CODEEXEC_INTERRUPT_GRACE": "0.5",
            }
        )
        full_env.update({k: str(v) for k, v in env.items()})
        self.proc = subprocess.Popen(
            [EXECUTOR_PYTHON, "-m", "codeexec_executor", "serve"],
            cwd=str(cwd),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines: list = []
        self.port_ready = threading.Event()
        self.port = 0
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()
        assert self.port_ready.wait(DEADLINE), "".join(self.stderr_lines)
        assert self.port, "".join(self.stderr_lines)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            if line.startswith("CODEEXEC_LISTENING "):
                self.port = int(line.split()[1])
                self.port_ready.set()
        self.port_ready.set()

    def connect(self, hello: bool = True) -> Client:
        client = Client(self.port)
        if hello:
            answer = client.handshake(self.token)
            assert answer["type"] == "hello", answer
        return client

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(DEADLINE)
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("site") / "codeexec-site"  # created by a test


@pytest.fixture(scope="module")
def executor(tmp_path_factory, site_dir):
    ex = Executor(tmp_path_factory.mktemp("workspace"), CODEEXEC_SITE_DIR=site_dir)
    yield ex
    ex.stop()
    assert ex.proc.returncode == 0


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()


@pytest.fixture
def client(executor):
    return executor.connect()


def _wait_until(predicate, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _not_busy(executor) -> None:
    c = executor.connect()
    try:
        _wait_until(lambda: c.request({"op": "ping"})["busy"] is False)
    finally:
        c.close()


# -- handshake -----------------------------------------------------------------


def test_handshake_ok(executor):
    c = executor.connect(hello=False)
    answer = c.handshake(executor.token)  # checks the server's proof on the way
    assert answer["type"] == "hello" and answer["protocol"] == 2
    assert answer["executor"] == "2.0.0" and answer["busy"] is False
    assert re.fullmatch(r"3\.\d+\.\d+\S*", answer["python"])
    assert isinstance(answer["pid"], int)
    c.close()


def test_each_challenge_is_fresh(executor):
    nonce = secrets.token_bytes(32)
    answers = []
    for _ in range(2):
        c = executor.connect(hello=False)
        answers.append(c.request(_hello(nonce)))
        c.close()
    assert answers[0]["nonce"] != answers[1]["nonce"]
    assert answers[0]["proof"] != answers[1]["proof"]


def test_wrong_proof_is_unauthorized_and_closed(executor):
    c = executor.connect(hello=False)
    client_nonce, server_nonce = c.challenge(executor.token)
    proof = _proof("not-the-token", CLIENT_LABEL, client_nonce, server_nonce)
    answer = c.request({"op": "auth", "proof": proof})
    assert answer["type"] == "error" and answer["code"] == "unauthorized"
    assert c.recv() is None


def test_server_proof_replayed_as_client_proof_is_refused(executor):
    c = executor.connect(hello=False)
    answer = c.request(_hello())
    assert c.request({"op": "auth", "proof": answer["proof"]})["code"] == "unauthorized"
    assert c.recv() is None


def test_a_proof_is_worthless_on_another_connection(executor):
    first = executor.connect(hello=False)
    client_nonce, server_nonce = first.challenge(executor.token)
    proof = _proof(executor.token, CLIENT_LABEL, client_nonce, server_nonce)
    second = executor.connect(hello=False)
    second.request(_hello(client_nonce))  # same client nonce, fresh server nonce
    assert second.request({"op": "auth", "proof": proof})["code"] == "unauthorized"
    assert second.recv() is None


@pytest.mark.parametrize(
    "frames",
    [
        [{"op": "exec", "id": "x", "code": "1"}],
        [{"op": "auth", "proof": base64.b64encode(bytes(32)).decode()}],
        [_hello(), {"op": "exec", "id": "x", "code": "1"}],
        [_hello(), _hello()],
    ],
    ids=["op-before-hello", "auth-before-hello", "op-before-auth", "second-hello"],
)
def test_out_of_order_handshake_is_unauthorized_and_closed(executor, frames):
    c = executor.connect(hello=False)
    for frame in frames[:-1]:
        assert c.request(frame)["type"] == "challenge"
    answer = c.request(frames[-1])
    assert answer["type"] == "error" and answer["code"] == "unauthorized"
    assert c.recv() is None


@pytest.mark.parametrize(
    "hello",
    [
        {"op": "hello", "token": "whatever", "protocol": 1},
        {"op": "hello", "nonce": base64.b64encode(bytes(32)).decode()},
        {**_hello(), "protocol": 3},
    ],
    ids=["version-1", "no-version", "version-3"],
)
def test_other_protocol_versions_are_a_mismatch(executor, hello):
    c = executor.connect(hello=False)
    answer = c.request(hello)
    assert answer["type"] == "error" and answer["code"] == "protocol_mismatch"
    assert "speaks protocol 2" in answer["message"]
    assert c.recv() is None


@pytest.mark.parametrize("nonce", [None, 7, "", "not base64!", base64.b64encode(b"short").decode()])
def test_bad_nonce_is_a_bad_request_and_closed(executor, nonce):
    c = executor.connect(hello=False)
    answer = c.request({"op": "hello", "protocol": 2, "nonce": nonce})
    assert answer["type"] == "error" and answer["code"] == "bad_request"
    assert c.recv() is None


def test_hello_on_an_authenticated_connection_is_a_bad_request(client):
    assert client.request(_hello())["code"] == "bad_request"
    assert client.request({"op": "ping"})["type"] == "pong"


def test_unauthenticated_frames_are_capped_at_64_kib(executor):
    c = executor.connect(hello=False)
    c.send_raw(struct.pack(">I", 64 * 1024 + 1))
    answer = c.recv()
    assert answer["type"] == "error" and answer["code"] == "too_large"
    assert c.recv() is None


def test_no_hello_is_closed_after_the_timeout(tmp_path):
    ex = Executor(tmp_path, CODEEXEC_HELLO_TIMEOUT=0.5)
    try:
        c = Client(ex.port)
        start = time.monotonic()
        frame = c.recv(timeout=10)
        if frame is not None:
            assert frame["code"] == "unauthorized"
            assert c.recv(timeout=10) is None
        assert 0.4 < time.monotonic() - start < 5
        half = Client(ex.port)  # a hello, and then no auth
        start = time.monotonic()
        assert half.request(_hello())["type"] == "challenge"
        frame = half.recv(timeout=10)
        if frame is not None:
            assert frame["code"] == "unauthorized"
            assert half.recv(timeout=10) is None
        assert time.monotonic() - start < 5
        ex.connect().close()  # the server is still fine
    finally:
        ex.stop()


# -- exec -------------------------------------------------------------------------


def test_exec_value_and_state_persist(client):
    events, result = client.exec("a = 40\na + 2")
    assert events == []
    assert result["status"] == "ok" and result["value"] == "42"
    assert result["error"] is None and result["truncated"] is False
    assert result["restarted"] is False and result["duration_ms"] >= 0
    assert client.exec("a")[1]["value"] == "40"
    assert client.exec("b = 1")[1]["value"] is None
    assert client.exec("None")[1]["value"] is None


def test_stdout_and_stderr_are_streamed(client):
    events, result = client.exec("import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert result["status"] == "ok"
    assert {(e["type"], e["id"]) for e in events} == {("stream", "c")}
    assert _stdout(events) == "out\n"
    assert _stdout(events, "stderr") == "err\n"


def test_child_process_output_is_captured(client):
    events, result = client.exec(
        "import os, subprocess, sys\nos.system('echo hi')\n"
        "subprocess.run([sys.executable, '-c', 'print(\"sub\")'])\nNone"
    )
    assert result["status"] == "ok"
    assert _stdout(events) == "hi\nsub\n"


def test_error_traceback_points_at_the_cell(client):
    _, result = client.exec("def f():\n    return 1 / 0\n")
    _, result = client.exec("x = 1\nf()")
    assert result["status"] == "error"
    error = result["error"]
    assert error["ename"] == "ZeroDivisionError" and error["evalue"] == "division by zero"
    text = "\n".join(error["traceback"])
    assert error["traceback"][0] == "Traceback (most recent call last):"
    assert 'File "<cell-' in text and ", line 2, in <module>" in text
    assert "    return 1 / 0" in text and ", line 2, in f" in text
    assert "codeexec_executor" not in text and "worker.py" not in text
    assert error["traceback"][-1] == "ZeroDivisionError: division by zero"


def test_syntax_error(client):
    _, result = client.exec("def f(:\n  pass")
    assert result["status"] == "error"
    assert result["error"]["ename"] == "SyntaxError"
    assert any("<cell-" in line for line in result["error"]["traceback"])


def test_system_exit_is_an_error_and_keeps_state(client):
    client.exec("kept = 5")
    _, result = client.exec("import sys\nsys.exit(3)")
    assert result["status"] == "error" and result["error"]["ename"] == "SystemExit"
    assert client.exec("kept")[1]["value"] == "5"


def test_timeout_keeps_the_namespace(client):
    client.exec("survivor = 'yes'")
    _, result = client.exec("import time\nwhile True:\n    time.sleep(0.01)", timeout=0.3)
    assert result["status"] == "timeout" and result["restarted"] is False
    assert result["error"]["ename"] == "KeyboardInterrupt"
    assert "worker.py" not in "\n".join(result["error"]["traceback"])
    assert client.exec("survivor")[1]["value"] == "'yes'"


def test_interrupt_op_from_another_connection(executor, client):
    client.exec("marker = 1")
    client.send(
        {
            "op": "exec",
            "id": "long",
            "code": "import time\nprint('started', flush=True)\ntime.sleep(60)",
        }
    )
    client.wait_stream("started")
    other = executor.connect()
    ack = other.request({"op": "interrupt", "id": "long"})
    assert ack == {"type": "ack", "op": "interrupt", "id": "long", "running": True}
    _, result = client.collect("long")
    assert result["status"] == "interrupted" and result["restarted"] is False
    assert result["error"]["ename"] == "KeyboardInterrupt"
    assert client.exec("marker")[1]["value"] == "1"
    assert other.request({"op": "interrupt", "id": "long"})["running"] is False
    other.close()


def test_a_finder_that_breaks_cache_invalidation_does_not_end_the_worker(client):
    """The worker invalidates the import caches between cells (after the result): a
    finder of the code's own that raises there costs nothing, and files written
    between two cells are still found by the next import."""
    client.exec(
        "import sys\n"
        "class Broken:\n"
        "    def find_spec(self, *a, **k):\n"
        "        return None\n"
        "    def invalidate_caches(self):\n"
        "        raise RuntimeError('no')\n"
        "sys.meta_path.insert(0, Broken())\n"
        "kept = 7"
    )
    _, result = client.exec("kept * 6")
    assert result["status"] == "ok" and result["value"] == "42", result
    assert result["restarted"] is False, result
    client.exec("sys.meta_path.pop(0)")


def test_code_ignoring_sigint_is_restarted(client):
    client.exec("lost = 1")
    _, result = client.exec(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        timeout=0.3,
    )
    assert result["status"] == "timeout" and result["restarted"] is True
    assert result["error"]["ename"] == "ExecutorRestarted"
    assert "all variables and imports are lost" in result["error"]["evalue"]
    _, result = client.exec("lost")
    assert result["status"] == "error" and result["error"]["ename"] == "NameError"
    assert client.exec("1 + 1")[1]["value"] == "2"


def test_os_exit_reports_executor_died(client):
    client.exec("gone = 1")
    _, result = client.exec("import os\nos._exit(1)")
    assert result["status"] == "error" and result["restarted"] is True
    assert result["error"]["ename"] == "ExecutorDied"
    assert "exited with code 1" in result["error"]["evalue"]
    assert client.exec("'gone' in dir()")[1]["value"] == "False"
    assert client.exec("2 * 3")[1]["value"] == "6"


def test_sigkill_reports_probable_oom(client):
    _, result = client.exec("import os\nprint('before')\nos.kill(os.getpid(), 9)")
    assert result["status"] == "error" and result["restarted"] is True
    assert "SIGKILL" in result["error"]["evalue"]
    assert "memory" in result["error"]["evalue"]
    assert client.exec("7")[1]["value"] == "7"


def test_busy_from_a_second_connection(executor, client):
    client.send(
        {"op": "exec", "id": "slow", "code": "import time\nprint('go', flush=True)\ntime.sleep(60)"}
    )
    client.wait_stream("go")
    other = executor.connect()
    answer = other.request({"op": "exec", "id": "second", "code": "1"})
    assert answer["type"] == "error" and answer["code"] == "busy"
    assert answer["id"] == "second"
    assert other.request({"op": "ping"}) == {"type": "pong", "busy": True, "idle_seconds": 0.0}
    other.request({"op": "interrupt"})
    assert client.collect("slow")[1]["status"] == "interrupted"
    other.close()


def test_closing_the_connection_interrupts_its_execution(executor):
    c = executor.connect()
    c.send(
        {
            "op": "exec",
            "id": "orphan",
            "code": "import time\nprint('go', flush=True)\ntime.sleep(60)",
        }
    )
    c.wait_stream("go")
    c.close()
    _not_busy(executor)


def test_output_cap(client):
    events, result = client.exec(
        "for i in range(2000):\n    print('x' * 99)\nprint('done')", output_limit=10000
    )
    assert result["status"] == "ok" and result["truncated"] is True
    out = _stdout(events)
    marker = "\n[codeexec: output truncated after 10000 bytes]\n"
    assert out.endswith(marker) and out.count("[codeexec:") == 1
    assert len(out) == 10000 + len(marker)


def test_display_cap_sends_a_marker_then_nothing(client):
    code = (
        "class Big:\n    def _repr_html_(self):\n        return 'h' * 100_000\n"
        "for _ in range(10):\n    display(Big())\nBig()"
    )
    events, result = client.exec(code, display_limit=250_000)
    shown = [e["data"] for e in events if e["type"] == "display"]
    assert result["status"] == "ok" and result["truncated"] is True
    assert [len(d.get("text/html", "")) for d in shown] == [100_000, 100_000, 0]
    assert shown[-1]["text/plain"].startswith("[codeexec: display output over the limit of 250000")
    _, again = client.exec("display(Big())")  # the cap is per execution
    assert again["truncated"] is False


def test_value_and_traceback_caps(client):
    _, result = client.exec("'v' * 3_000_000", value_limit=1000)
    assert result["truncated"] is True and len(result["value"]) < 1100
    assert "[codeexec: value truncated: 2999002 more characters]" in result["value"]
    code = (
        "def f(n):\n    return g(n) if n else 1 / 0\n"
        "def g(n):\n    x = 'x'\n    return f(n - 1)\n"
        "class E(Exception):\n    pass\n"
        "try:\n    f(300)\nexcept ZeroDivisionError:\n    raise E('m' * 5_000_000)"
    )
    _, result = client.exec(code, error_limit=20_000)
    error = result["error"]
    assert result["status"] == "error" and result["truncated"] is True
    assert error["ename"] == "E" and error["evalue"].startswith("mmm")
    size = len(error["evalue"]) + sum(len(line) + 1 for line in error["traceback"])
    assert size < 20_000 + 1000
    assert error["traceback"][0] == "Traceback (most recent call last):"
    assert any("traceback lines omitted" in line for line in error["traceback"])
    assert error["traceback"][-1].startswith("E: mmm")  # the end is what is kept
    _, small = client.exec("1/0", error_limit=20_000)
    assert small["truncated"] is False and small["error"]["evalue"] == "division by zero"


def test_output_is_utf8_decoded_across_reads(client):
    events, result = client.exec(
        "import os, time\nb = 'é€'.encode()\nos.write(1, b[:1])\ntime.sleep(0.2)\n"
        "os.write(1, b[1:4])\ntime.sleep(0.2)\nos.write(1, b[4:] + b'\\xff!')\nNone"
    )
    assert result["status"] == "ok"
    assert _stdout(events) == "é€\ufffd!"


def test_ordering_all_output_before_the_result(client):
    events, result = client.exec("for i in range(10000):\n    print(i)")
    assert result["status"] == "ok"
    assert _stdout(events) == "".join(f"{i}\n" for i in range(10000))
    assert len(events) < 10000  # batched, not one frame per write


# -- rich output ------------------------------------------------------------------

RICH = """
class Rich:
    def _repr_html_(self):
        return "<b>rich</b>"
    def _repr_png_(self):
        return b"\\x89PNG fake"
    def _repr_markdown_(self):
        raise RuntimeError("broken repr is skipped")
    def __repr__(self):
        return "Rich()"
"""


def test_last_value_with_rich_reprs(client):
    client.exec(RICH)
    events, result = client.exec("Rich()")
    assert result["value"] == "Rich()"
    assert events == [
        {
            "type": "display",
            "id": "c",
            "data": {
                "image/png": base64.b64encode(b"\x89PNG fake").decode(),
                "text/html": "<b>rich</b>",
                "text/plain": "Rich()",
            },
        }
    ]


def test_display_builtin(client):
    client.exec(RICH)
    events, result = client.exec("print('a')\ndisplay(Rich(), 5)\nprint('b')")
    assert result["status"] == "ok" and result["value"] is None
    kinds: list = []
    for e in events:  # adjacent stream frames may split a print
        if e["type"] == "stream" and kinds and kinds[-1][0] == "stream":
            kinds[-1] = ("stream", kinds[-1][1] + e["text"])
        else:
            kinds.append((e["type"], e.get("text") or e["data"]["text/plain"]))
    assert kinds == [("stream", "a\n"), ("display", "Rich()"), ("display", "5"), ("stream", "b\n")]


# matplotlib figures: tests/integration/test_outputs.py, with real matplotlib in a container.


# -- protocol errors --------------------------------------------------------------


def test_oversize_length_prefix_is_too_large(executor):
    c = executor.connect()
    c.send_raw(struct.pack(">I", 0xFFFFFFFF) + b"{")
    answer = c.recv()
    assert answer["type"] == "error" and answer["code"] == "too_large"
    assert c.recv() is None
    executor.connect().close()


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b'"s"'])
def test_bad_frame_is_answered_then_closed(executor, body):
    c = executor.connect()
    c.send_raw(struct.pack(">I", len(body)) + body)
    answer = c.recv()
    assert answer["type"] == "error" and answer["code"] == "bad_frame"
    assert c.recv() is None


def test_unknown_op_keeps_the_connection(client):
    answer = client.request({"op": "frobnicate", "id": 1})
    assert answer["type"] == "error" and answer["code"] == "unknown_op"
    assert client.request({"op": "ping"})["type"] == "pong"


@pytest.mark.parametrize(
    "req",
    [
        {"op": "exec", "id": "b"},
        {"op": "exec", "code": "1"},
        {"op": "exec", "id": "b", "code": "1", "timeout": "soon"},
        {"op": "exec", "id": "b", "code": "1", "display_limit": -1},
        {"op": "exec", "id": "b", "code": "1", "value_limit": "1m"},
        {"op": "exec", "id": "b", "code": "1", "error_limit": True},
        {"op": "exec", "id": "b", "code": "1", "env": ["A=1"]},
        {"op": "exec", "id": "b", "code": "1", "env": {"A": 1}},
        {"op": "exec", "id": "b", "code": "1", "env": {"A=B": "1"}},
        {"op": "exec", "id": "b", "code": "1", "env": {"A": "nul\0"}},
        {"op": "get_file", "id": "b"},
        {"no": "op"},
    ],
)
def test_bad_request(client, req):
    answer = client.request(req)
    assert answer["type"] == "error" and answer["code"] == "bad_request"
    assert client.request({"op": "ping"})["type"] == "pong"


def test_exec_env_holds_for_that_execution_only(client):
    code = "import os; os.environ.get('CODEEXEC_T_A'), os.environ.get('HOME') is not None"
    _, result = client.exec(code, env={"CODEEXEC_T_A": "one", "HOME": "/elsewhere"})
    assert result["status"] == "ok" and result["value"] == "('one', True)"
    home = client.exec("import os; os.environ['HOME']", id="h", env={"HOME": "/elsewhere"})[1]
    assert home["value"] == "'/elsewhere'"
    _, after = client.exec("import os; os.environ.get('CODEEXEC_T_A'), os.environ['HOME']", "d")
    assert after["value"].startswith("(None, ") and "/elsewhere" not in after["value"]


def test_half_frame_does_not_block_other_clients(executor):
    stuck = executor.connect()
    stuck.send_raw(struct.pack(">I", 100) + b'{"op": "pi')
    other = executor.connect(hello=False)
    other.send_raw(struct.pack(">I", 1000))  # and no handshake either
    c = executor.connect()
    assert c.exec("'still'")[1]["value"] == "'still'"
    for x in (stuck, other, c):
        x.close()


# -- other ops ----------------------------------------------------------------------


def test_reset_empties_the_namespace(client):
    client.exec("before_reset = 1")
    assert client.request({"op": "reset"}) == {"type": "ack", "op": "reset"}
    assert client.exec("'before_reset' in dir()")[1]["value"] == "False"


def test_put_and_get_file(client):
    data = bytes(range(256)) * 10
    answer = client.request(
        {
            "op": "put_file",
            "id": "p",
            "path": "sub/dir/f.bin",
            "data": base64.b64encode(data).decode(),
            "mode": 0o600,
        }
    )
    assert answer == {"type": "ack", "op": "put_file", "id": "p", "size": len(data)}
    assert client.exec("len(open('sub/dir/f.bin', 'rb').read())")[1]["value"] == "2560"
    assert (
        client.exec("import os\noct(os.stat('sub/dir/f.bin').st_mode & 0o777)")[1]["value"]
        == "'0o600'"
    )
    answer = client.request(
        {"op": "get_file", "id": "g", "path": "sub/dir/f.bin", "max_bytes": 10000}
    )
    assert answer["type"] == "file" and answer["size"] == len(data)
    assert base64.b64decode(answer["data"]) == data
    answer = client.request(
        {"op": "get_file", "id": "g", "path": "sub/dir/f.bin", "max_bytes": 100}
    )
    assert answer["code"] == "too_large" and "2560" in answer["message"]
    answer = client.request({"op": "get_file", "id": "g", "path": "missing.txt"})
    assert answer["type"] == "error" and answer["code"] == "not_found"
    assert answer["id"] == "g"
    answer = client.request({"op": "get_file", "id": "g", "path": "sub"})
    assert answer["code"] == "io_error"


def test_relay_passes_frames_through(executor):
    env = dict(os.environ, PYTHONPATH=str(EXECUTOR_DIR), CODEEXEC_PORT=str(executor.port))
    relay = subprocess.Popen(
        [EXECUTOR_PYTHON, "-m", "codeexec_executor", "relay"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def request(obj):
        relay.stdin.write(_frame(obj))
        relay.stdin.flush()
        (n,) = struct.unpack(">I", relay.stdout.read(4))
        return json.loads(relay.stdout.read(n))

    try:
        client_nonce = secrets.token_bytes(32)
        challenge = request(_hello(client_nonce))
        assert challenge["type"] == "challenge"
        server_nonce = base64.b64decode(challenge["nonce"])
        proof = _proof(executor.token, CLIENT_LABEL, client_nonce, server_nonce)
        assert request({"op": "auth", "proof": proof})["type"] == "hello"
        assert request({"op": "ping"})["type"] == "pong"
        relay.stdin.close()
        assert relay.wait(DEADLINE) == 0, relay.stderr.read()
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()
        relay.stdout.close()
        relay.stderr.close()


def test_idle_timeout_exits(tmp_path):
    ex = Executor(tmp_path, CODEEXEC_IDLE_TIMEOUT=1)
    try:
        c = ex.connect()
        assert c.exec("1")[1]["status"] == "ok"
        assert ex.proc.wait(timeout=DEADLINE) == 0
        assert c.recv() is None
    finally:
        ex.stop()


def test_looking_in_is_not_activity_but_ping_is(tmp_path):
    ex = Executor(tmp_path, CODEEXEC_IDLE_TIMEOUT=30)
    try:

        def idle_on_hello() -> float:
            c = ex.connect(hello=False)
            answer = c.handshake(ex.token)
            c.close()
            return answer["idle_seconds"]

        c = ex.connect()
        assert c.exec("1")[1]["status"] == "ok"
        _wait_until(lambda: idle_on_hello() >= 0.5)
        assert idle_on_hello() >= 0.5  # hellos themselves did not reset the timer
        stranger = ex.connect(hello=False)
        stranger.send_raw(b"\x00\x00\x00\x02{}")
        stranger.close()
        assert idle_on_hello() >= 0.5  # nor does an unauthenticated peer
        assert c.request({"op": "ping"})["idle_seconds"] < 0.5  # ping keeps it alive
        assert idle_on_hello() < 0.5
    finally:
        ex.stop()


def test_sigterm_exits_promptly(tmp_path):
    ex = Executor(tmp_path)
    try:
        c = ex.connect()
        c.send(
            {
                "op": "exec",
                "id": "s",
                "code": "import time\nprint('go', flush=True)\ntime.sleep(60)",
            }
        )
        c.wait_stream("go")
        start = time.monotonic()
        ex.proc.terminate()
        assert ex.proc.wait(timeout=DEADLINE) == 0
        assert time.monotonic() - start < 3
    finally:
        ex.stop()


def test_sigint_between_cells_is_ignored(executor, client):
    client.exec("between = 1")
    worker_pid = executor.connect(hello=False).handshake(executor.token)["worker_pid"]
    os.kill(worker_pid, 2)
    assert client.request({"op": "interrupt"})["running"] is False
    _, result = client.exec("between")
    assert result["value"] == "1" and result["restarted"] is False
    assert executor.connect(hello=False).handshake(executor.token)["worker_pid"] == worker_pid


def test_zero_timeout_and_zero_output_limit(client):
    events, result = client.exec("print('hidden')\n3", output_limit=0)
    assert result["value"] == "3" and result["truncated"] is True
    assert _stdout(events) == "\n[codeexec: output truncated after 0 bytes]\n"
    _, result = client.exec("import time\ntime.sleep(5)", timeout=0)
    assert result["status"] == "timeout"


def test_a_client_that_does_not_read_is_dropped(executor):
    slow = executor.connect()
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.send(
        {
            "op": "exec",
            "id": "flood",
            "output_limit": 1 << 30,
            "code": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(200):\n"
            "    sys.stdout.write(chunk)",
        }
    )
    _wait_until(lambda: any("does not read" in line for line in executor.stderr_lines))
    _not_busy(executor)  # dropped, so its execution was interrupted
    c = executor.connect()
    assert c.exec("'alive'")[1]["value"] == "'alive'"


def test_cell_definitions_live_in_a_real_main_module(client):
    client.exec("import pickle\nclass Point:\n    pass\n")
    _, result = client.exec("type(pickle.loads(pickle.dumps(Point()))) is Point")
    assert result["value"] == "True"
    assert client.exec("__name__")[1]["value"] == "'__main__'"


def test_runtime_site_dir_is_importable_once_it_appears(client, site_dir):
    _, result = client.exec("import late_pkg")
    assert result["error"]["ename"] == "ModuleNotFoundError"
    site_dir.mkdir()
    (site_dir / "late_pkg.py").write_text("VALUE = 42\n")
    assert client.exec("import late_pkg\nlate_pkg.VALUE")[1]["value"] == "42"


def test_file_ops_refuse_what_is_not_a_regular_file_at_once(client):
    client.exec("import os\nos.mkfifo('fifo-x')\nos.symlink('/proc/self/environ', 'env-x')")
    for req, says in (
        ({"op": "get_file", "id": "f", "path": "fifo-x"}, "only regular files"),
        ({"op": "put_file", "id": "f", "path": "fifo-x", "data": "eA=="}, "only regular files"),
        ({"op": "get_file", "id": "f", "path": "/dev/null"}, "only regular files"),
        ({"op": "get_file", "id": "f", "path": "env-x"}, "is in /proc"),
        ({"op": "put_file", "id": "f", "path": "/proc/self/comm", "data": "eA=="}, "is in /proc"),
    ):
        started = time.monotonic()
        answer = client.request(req)
        assert answer["code"] == "io_error" and says in answer["message"], answer
        assert time.monotonic() - started < DEADLINE
    assert client.exec("1 + 1")[1]["value"] == "2"


def test_max_lifetime_ends_even_a_busy_executor(tmp_path):
    ex = Executor(tmp_path, CODEEXEC_MAX_LIFETIME=2, CODEEXEC_IDLE_TIMEOUT=600)
    try:
        c = ex.connect()
        c.send({"op": "exec", "id": "busy", "code": "while True:\n    pass"})
        assert ex.proc.wait(timeout=DEADLINE) == 0
        assert "maximum lifetime" in "".join(ex.stderr_lines)
    finally:
        ex.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")
def test_a_supervisor_that_cannot_hide_its_token_does_not_serve(tmp_path):
    # Without ctypes it cannot make itself non-dumpable: it refuses, loudly.
    (tmp_path / "ctypes.py").write_text("raise ImportError('no ctypes in this Python')\n")
    env = dict(
        os.environ,
        PYTHONPATH=f"{tmp_path}{os.pathsep}{EXECUTOR_DIR}",
        CODEEXEC_TOKEN="t" * 32,
        CODEEXEC_PORT="0",
        CODEEXEC_HOST="127.0.0.1",
    )
    proc = subprocess.run(
        [EXECUTOR_PYTHON, "-m", "codeexec_executor", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert proc.returncode == 2
    assert "non-dumpable" in proc.stderr and "no ctypes" in proc.stderr
    assert "CODEEXEC_LISTENING" not in proc.stderr
