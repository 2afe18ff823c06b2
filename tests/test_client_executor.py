"""The real ExecutorClient against the real executor, run as a local process: no docker.

The executor process comes from the contract tests' harness; here it is driven only
through ``codeexec.client``, over TCP and over the real ``relay`` subcommand's pipes.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec.client import ExecutorClient
from codeexec.errors import FileTransferError, HandshakeError, SessionBusy
from codeexec.models import ExecResult, StreamEvent
from tests.test_executor_contract import DEADLINE, EXECUTOR_DIR, EXECUTOR_PYTHON, Executor


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    ex = Executor(tmp_path_factory.mktemp("workspace"))
    yield ex
    ex.stop()


@pytest.fixture
def client(executor: Executor) -> Iterator[ExecutorClient]:
    with ExecutorClient.connect_tcp("127.0.0.1", executor.port, executor.token) as c:
        yield c


def wait_busy(executor: Executor) -> None:
    with ExecutorClient.connect_tcp("127.0.0.1", executor.port, executor.token) as probe:
        deadline = time.monotonic() + DEADLINE
        while not probe.ping()["busy"]:
            assert time.monotonic() < deadline, "the execution never started"
            time.sleep(0.01)


def test_hello(client: ExecutorClient) -> None:
    assert client.hello["type"] == "hello" and client.hello["protocol"] == 2
    assert client.hello["python"].count(".") == 2


def test_wrong_token_is_a_handshake_error(executor: Executor) -> None:
    with pytest.raises(HandshakeError, match="is not the executor of the session"):
        ExecutorClient.connect_tcp("127.0.0.1", executor.port, "wrong-token-xxxxxxxx")


def test_value_and_state_persist(client: ExecutorClient) -> None:
    assert client.execute("x = 41").value is None
    result = client.execute("x + 1")
    assert (result.status, result.value) == ("ok", "42")


def test_stream_order(client: ExecutorClient) -> None:
    code = "import sys\nfor i in range(3):\n    print(i, flush=True)\nsys.stderr.write('e\\n')\n7"
    events = list(client.stream(code, timeout=10))
    result = events.pop()
    assert isinstance(result, ExecResult) and result.value == "7"
    assert all(isinstance(e, StreamEvent) for e in events)
    out = "".join(e.text for e in events if isinstance(e, StreamEvent) and e.name == "stdout")
    assert out == "0\n1\n2\n"
    collected = client.execute(code, timeout=10)
    assert (collected.stdout, collected.stderr) == ("0\n1\n2\n", "e\n")


def test_error_is_data(client: ExecutorClient) -> None:
    result = client.execute("1/0")
    assert result.status == "error" and result.error is not None
    assert result.error.ename == "ZeroDivisionError"
    assert "<cell-" in result.error.format()


def test_timeout_keeps_the_namespace(client: ExecutorClient) -> None:
    client.execute("kept = 'yes'")
    result = client.execute("import time\ntime.sleep(30)", timeout=0.3)
    assert result.status == "timeout" and not result.restarted
    assert client.execute("kept").value == "'yes'"


def test_interrupt_from_another_thread(executor: Executor, client: ExecutorClient) -> None:
    def watcher() -> None:
        wait_busy(executor)
        client.interrupt()

    thread = threading.Thread(target=watcher)
    thread.start()
    result = client.execute("import time\ntime.sleep(30)")
    thread.join(DEADLINE)
    assert result.status == "interrupted"
    assert client.execute("1 + 1").value == "2"


def test_busy_from_a_second_client(executor: Executor, client: ExecutorClient) -> None:
    events = client.stream("import time\nprint('started', flush=True)\ntime.sleep(30)")
    first = next(events)
    assert isinstance(first, StreamEvent) and first.text.startswith("started")
    with ExecutorClient.connect_tcp("127.0.0.1", executor.port, executor.token) as other:
        with pytest.raises(SessionBusy, match="interrupt"):
            other.execute("1")
        assert other.ping()["busy"] is True
    client.interrupt()
    rest = list(events)
    assert isinstance(rest[-1], ExecResult) and rest[-1].status == "interrupted"


def test_closing_a_stream_early_interrupts_it(client: ExecutorClient) -> None:
    events = client.stream("import time\nprint('go', flush=True)\ntime.sleep(30)")
    first = next(events)
    assert isinstance(first, StreamEvent) and first.text.startswith("go")
    events.close()
    assert not client.closed
    assert client.execute("'still here'").value == "'still here'"


def test_rich_display(client: ExecutorClient) -> None:
    code = "class P:\n    def _repr_png_(self):\n        return b'\\x89PNG'\nP()"
    result = client.execute(code)
    assert [d.data.get("image/png") for d in result.displays] == [b"\x89PNG"]


def test_files(client: ExecutorClient) -> None:
    assert client.put_file("sub/data.bin", b"\x00\x01\x02") == 3
    assert client.get_file("sub/data.bin", max_bytes=10) == b"\x00\x01\x02"
    with pytest.raises(FileTransferError) as missing:
        client.get_file("no-such-file", max_bytes=10)
    assert missing.value.code == "not_found"
    with pytest.raises(FileTransferError) as large:
        client.get_file("sub/data.bin", max_bytes=1)
    assert large.value.code == "too_large"


def test_reset_empties_the_namespace(client: ExecutorClient) -> None:
    client.execute("gone = 1")
    client.reset()
    assert client.execute("gone").error is not None


def test_over_the_relay_pipes(executor: Executor, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(EXECUTOR_DIR), CODEEXEC_PORT=str(executor.port))
    relay = subprocess.Popen(
        [EXECUTOR_PYTHON, "-m", "codeexec_executor", "relay"], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert relay.stdin is not None and relay.stdout is not None
    with ExecutorClient.over_pipes(
        relay.stdout, relay.stdin, executor.token, on_close=lambda: relay.wait(DEADLINE)
    ) as c:
        result = c.execute("print('via relay'); 6 * 7", timeout=10)
        assert (result.stdout, result.value) == ("via relay\n", "42")
    assert relay.returncode == 0
