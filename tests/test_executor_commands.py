"""Contract tests for the executor's ``run`` op (docs/protocol.md, "Commands") and
the file ops added with it, run against the executor as a local process: no docker."""

from __future__ import annotations

import time

import pytest

from tests.test_executor_contract import OPEN_CLIENTS, Client, Executor


@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    ex = Executor(tmp_path_factory.mktemp("workspace"))
    yield ex
    ex.stop()
    assert ex.proc.returncode == 0


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()


@pytest.fixture
def client(executor) -> Client:
    return executor.connect()


def _run(client: Client, argv, id: str = "r", **fields):
    """Send a run request; return (stdout, stderr, exit frame)."""
    client.send({"op": "run", "id": id, "argv": argv, **fields})
    out = {"stdout": "", "stderr": ""}
    while True:
        frame = client.recv()
        assert frame is not None, "connection closed before the exit frame"
        assert frame.get("id") == id, frame
        if frame["type"] == "exit":
            return out["stdout"], out["stderr"], frame
        assert frame["type"] == "stream", frame
        out[frame["name"]] += frame["text"]


def test_run_returns_output_and_exit_code(client):
    out, err, done = _run(client, ["sh", "-c", "echo hi; echo oops >&2; exit 3"])
    assert (out, err) == ("hi\n", "oops\n")
    assert done["exit_code"] == 3 and done["signal"] is None
    assert done["timed_out"] is False and done["truncated"] is False
    assert done["duration_ms"] >= 0


def test_a_list_is_never_interpreted_by_a_shell(client):
    out, _, done = _run(client, ["echo", "$HOME", "a;b", "*"])
    assert out == "$HOME a;b *\n" and done["exit_code"] == 0


def test_cwd_and_env_and_no_token(client, executor, tmp_path):
    out, _, done = _run(
        client,
        ["sh", "-c", 'pwd; echo "$GREETING"; echo "token=${CODEEXEC_TOKEN:-none}"'],
        cwd=str(tmp_path),
        env={"GREETING": "hello there"},
    )
    assert out.splitlines() == [str(tmp_path), "hello there", "token=none"]
    assert executor.token not in out


def test_a_missing_program_exits_127_and_a_missing_cwd_2(client):
    _, err, done = _run(client, ["no-such-program-xyz"])
    assert done["exit_code"] == 127 and "no-such-program-xyz" in err
    _, err, done = _run(client, ["true"], cwd="/no/such/dir")
    assert done["exit_code"] == 2 and "/no/such/dir" in err


def test_timeout_kills_the_whole_process_group(client, tmp_path):
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    _, _, done = _run(
        client,
        ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"],
        timeout=0.5,
    )
    assert done["timed_out"] is True and done["signal"] is not None
    assert done["exit_code"] == 128 + done["signal"]
    assert time.monotonic() - started < 15
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the backgrounded child survived the timeout"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_interrupt_sends_sigint_to_the_command(client):
    client.send({"op": "run", "id": "long", "argv": ["sleep", "300"]})
    client.send({"op": "interrupt", "id": "long"})
    frames = [client.recv(), client.recv()]
    ack = next(f for f in frames if f["type"] == "ack")
    done = next(f for f in frames if f["type"] == "exit")
    assert ack["running"] is True
    assert done["interrupted"] is True and done["signal"] == 2 and done["exit_code"] == 130


def test_output_cap_and_streaming_order(client):
    out, _, done = _run(client, ["sh", "-c", "yes x | head -c 100000"], output_limit=1000)
    assert done["truncated"] is True
    assert out.startswith("x\n" * 500) and "truncated after 1000 bytes" in out


def test_commands_run_beside_an_execution(executor, client):
    client.send({"op": "exec", "id": "slow", "code": "import time; time.sleep(2); 1"})
    other = executor.connect()
    out, _, done = _run(other, ["echo", "beside"])
    assert out == "beside\n" and done["exit_code"] == 0
    assert client.collect("slow")[1]["status"] == "ok"


def test_closing_the_connection_kills_its_command(executor, tmp_path):
    pidfile = tmp_path / "p.pid"
    c = executor.connect()
    c.send({"op": "run", "id": "x", "argv": ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"]})
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    c.close()
    pid = int(pidfile.read_text())
    while _alive(pid):
        assert time.monotonic() < deadline + 10, "the command outlived its connection"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "fields",
    [
        {"argv": []},
        {"argv": "ls"},
        {"argv": ["ls", 3]},
        {"argv": ["ls"], "env": {"A=B": "x"}},
        {"argv": ["ls"], "timeout": -1},
        {"argv": ["ls"], "cwd": ""},
    ],
)
def test_bad_run_requests(client, fields):
    answer = client.request({"op": "run", "id": "b", **fields})
    assert answer["type"] == "error" and answer["code"] == "bad_request", answer


def test_background_child_that_keeps_the_pipe_does_not_hang_the_result(client):
    started = time.monotonic()
    out, _, done = _run(client, ["sh", "-c", "sleep 30 & echo started"])
    assert out == "started\n" and done["exit_code"] == 0
    assert time.monotonic() - started < 15
