"""The executor's ``quiesce`` op (before a gVisor checkpoint), on a local executor process.

It answers, closes every connection and its listening socket, and listens again on
the same port on SIGUSR1 or when its ``seconds`` run out; the namespace is kept.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_executor_contract import DEADLINE, Executor


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[Executor]:
    ex = Executor(tmp_path)
    yield ex
    ex.stop()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _connect_again(ex: Executor) -> None:
    deadline = time.monotonic() + DEADLINE
    while _refused(ex.port):
        assert time.monotonic() < deadline, "the executor never listened again"
        time.sleep(0.05)


def test_quiesce_closes_everything_until_sigusr1(executor: Executor) -> None:
    client, other = executor.connect(), executor.connect()
    client.exec("kept = 41")
    port = executor.port
    answer = client.request({"op": "quiesce", "seconds": 120})
    assert answer == {"type": "ack", "op": "quiesce", "seconds": 120}
    assert client.recv() is None and other.recv() is None  # both connections closed
    assert _refused(port)
    os.kill(executor.proc.pid, signal.SIGUSR1)
    _connect_again(executor)
    again = executor.connect()
    assert again.exec("kept + 1")[1]["value"] == "42"  # same port, same namespace
    for c in (client, other, again):
        c.close()


def test_quiesce_ends_by_itself_and_checks_its_argument(executor: Executor) -> None:
    client = executor.connect()
    bad = client.request({"op": "quiesce", "seconds": 0})
    assert bad["type"] == "error" and bad["code"] == "bad_request"
    assert client.request({"op": "quiesce", "seconds": 0.3})["type"] == "ack"
    client.close()
    _connect_again(executor)
    executor.connect().close()
