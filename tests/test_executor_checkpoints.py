"""Contract tests for checkpoints and rollback in the executor (docs/protocol.md,
docs/snapshots.md), run as a local process: no docker."""

from __future__ import annotations

import os
import time

import pytest

from tests.test_executor_contract import DEADLINE, Executor, _stdout

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="checkpoints need fork()")


@pytest.fixture
def executor(tmp_path):
    ex = Executor(tmp_path, CODEEXEC_MAX_CHECKPOINTS="3", CODEEXEC_INTERRUPT_GRACE="0.5")
    yield ex
    ex.stop()


@pytest.fixture
def client(executor):
    return executor.connect()


def _value(client, code: str):
    _events, result = client.exec(code)
    assert result["status"] == "ok", result
    return result["value"]


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is gone once its state says so.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_restore_returns_namespace_modules_and_objects(client):
    _value(client, "x = [1, 2, 3]; import json")
    answer = client.request({"op": "checkpoint", "name": "one"})
    assert answer["type"] == "checkpoint" and answer["name"] == "one", answer
    assert answer["alive"] is True
    _value(client, "x.append(4); y = 5; import decimal; del json")
    assert client.request({"op": "restore", "name": "one"})["name"] == "one"
    assert _value(client, "x, 'y' in dir(), 'json' in dir(), 'decimal' in dir()") == (
        "([1, 2, 3], False, True, False)"
    )
    # Restored twice: the checkpoint stays parked.
    _value(client, "x.clear()")
    client.request({"op": "restore", "name": "one"})
    assert _value(client, "x") == "[1, 2, 3]"


def test_restored_worker_streams_output_and_is_interruptible(client):
    client.request({"op": "checkpoint", "name": "one"})
    client.request({"op": "restore", "name": "one"})
    events, result = client.exec("print('hello'); import sys; print('err', file=sys.stderr)")
    assert result["status"] == "ok"
    assert _stdout(events) == "hello\n" and _stdout(events, "stderr") == "err\n"
    _events, result = client.exec("import time; time.sleep(30)", timeout=0.5)
    assert result["status"] == "timeout" and result["restarted"] is False, result


def test_list_and_drop_and_names(client):
    auto = client.request({"op": "checkpoint"})
    assert auto["name"] == "cp1", auto
    client.request({"op": "checkpoint", "name": "b"})
    listed = client.request({"op": "checkpoints"})["checkpoints"]
    assert [c["name"] for c in listed] == ["cp1", "b"]
    pid_answer = client.request({"op": "checkpoint", "name": "b"})
    assert pid_answer["type"] == "error" and pid_answer["code"] == "checkpoint_exists"
    bad = client.request({"op": "checkpoint", "name": "../x"})
    assert bad["type"] == "error" and bad["code"] == "bad_request"
    assert client.request({"op": "drop", "name": "cp1"})["name"] == "cp1"
    assert [c["name"] for c in client.request({"op": "checkpoints"})["checkpoints"]] == ["b"]
    missing = client.request({"op": "restore", "name": "cp1"})
    assert missing["code"] == "no_such_checkpoint" and "b" in missing["message"], missing


def test_the_cap_is_a_clear_error(client):
    for name in ("a", "b", "c"):
        assert client.request({"op": "checkpoint", "name": name})["type"] == "checkpoint"
    answer = client.request({"op": "checkpoint", "name": "d"})
    assert answer["code"] == "checkpoint_limit" and "drop one" in answer["message"], answer


def test_dropped_checkpoint_process_exits(client, executor):
    def children_become(count: int) -> None:
        deadline = time.monotonic() + DEADLINE
        while len(_children(executor.proc.pid)) != count:
            assert time.monotonic() < deadline, _children(executor.proc.pid)
            time.sleep(0.02)

    children_become(1)  # the worker
    client.request({"op": "checkpoint", "name": "a"})
    children_become(2)  # and the parked copy, the supervisor's once its middle process exited
    client.request({"op": "drop", "name": "a"})
    children_become(1)


def _children(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split() if not _pid_gone(int(p))]
    except OSError:
        return []


def test_files_are_kept_only_when_asked(client, executor, tmp_path):
    _value(client, "open('a.txt', 'w').write('one')")
    client.request({"op": "checkpoint", "name": "with", "files": True})
    client.request({"op": "checkpoint", "name": "without"})
    _value(client, "open('a.txt', 'w').write('two'); open('b.txt', 'w').write('new')")
    client.request({"op": "restore", "name": "without"})
    assert _value(client, "open('a.txt').read()") == "'two'"
    client.request({"op": "restore", "name": "with"})
    assert _value(client, "import os; open('a.txt').read(), os.path.exists('b.txt')") == (
        "('one', False)"
    )


def test_rollback_on_error_restores_the_state_before_the_call(client):
    _value(client, "x = 1")
    _events, result = client.exec("x = 2; import fractions; raise ValueError('no')", rollback=True)
    assert result["status"] == "error" and result["rolled_back"] is True, result
    assert _value(client, "x, 'fractions' in dir()") == "(1, False)"
    _events, result = client.exec("x = 3", rollback=True)
    assert result["status"] == "ok" and result["rolled_back"] is False
    assert _value(client, "x") == "3"
    assert client.request({"op": "checkpoints"})["checkpoints"] == []  # none left behind


def test_rollback_after_timeout_and_after_the_worker_dies(client):
    _value(client, "x = 1")
    _events, result = client.exec(
        "x = 2\nimport signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)",
        timeout=0.3,
        rollback=True,
    )
    assert result["status"] == "timeout" and result["rolled_back"] is True, result
    assert result["restarted"] is False and "rolled back" in result["error"]["evalue"]
    assert _value(client, "x") == "1"
    _events, result = client.exec("x = 5; import os; os._exit(3)", rollback=True)
    assert result["rolled_back"] is True and result["restarted"] is False, result
    assert _value(client, "x") == "1"


def test_without_rollback_an_error_keeps_the_changes(client):
    _events, result = client.exec("x = 2; raise ValueError", rollback=False)
    assert result["rolled_back"] is False
    assert _value(client, "x") == "2"


def test_fork_is_an_independent_branch_and_the_source_keeps_running(client, executor):
    _value(client, "x = [1]; import json")
    forked = client.request({"op": "fork", "name": "b1"})
    assert forked["type"] == "checkpoint" and forked["name"] == "b1", forked
    other = executor.connect()
    assert other.request({"op": "branch", "name": "b1"})["type"] == "ack"
    assert _value(other, "x.append(2); x, 'json' in dir()") == "([1, 2], True)"
    assert _value(client, "x") == "[1]"  # the source, on its first connection
    # Each branch has its own checkpoints, and they run at the same time.
    other.request({"op": "checkpoint", "name": "in-fork"})
    assert client.request({"op": "checkpoints"})["checkpoints"] == []
    other.send({"op": "exec", "id": "slow", "code": "import time; time.sleep(1); 'fork'"})
    assert _value(client, "'source'") == "'source'"
    assert other.collect("slow")[1]["value"] == "'fork'"
    assert client.request({"op": "forks"})["forks"] == ["b1"]
    assert client.request({"op": "fork", "name": "b1"})["code"] == "fork_exists"
    assert client.request({"op": "close_fork", "name": "b1"})["type"] == "ack"
    gone = other.request({"op": "exec", "id": "g", "code": "1"})
    assert gone["type"] == "error" and gone["code"] == "no_such_fork", gone
    assert _value(client, "x") == "[1]"


def test_a_fork_survives_its_worker_dying(client, executor):
    client.request({"op": "fork", "name": "b2"})
    other = executor.connect()
    other.request({"op": "branch", "name": "b2"})
    _events, result = other.exec("import os; os._exit(1)")
    assert result["status"] == "error" and result["restarted"] is True
    assert _value(other, "1 + 1") == "2"
    assert _value(client, "2 + 2") == "4"


def test_restore_right_after_checkpoint_never_kills_the_parked_copy(client):
    """The parked copy gets its own process group before its pid is known: a restore
    at once (which kills the worker's group) must find it alive, round after round.
    (The race this guards against showed at 100 MB in a container; see also
    tests/integration/test_checkpoints.py.)"""
    _value(client, "big = [bytes(1024) for _ in range(20000)]; n = 0")
    for i in range(8):
        assert client.request({"op": "checkpoint", "name": f"r{i}"})["type"] == "checkpoint"
        answer = client.request({"op": "restore", "name": f"r{i}"})
        assert answer["type"] == "checkpoint", answer
        assert client.request({"op": "drop", "name": f"r{i}"})["type"] == "checkpoint"
    assert _value(client, "len(big), n") == "(20000, 0)"
