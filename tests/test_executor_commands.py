"""Contract tests for the executor's ``run`` op (docs/protocol.md, "Commands") and
the file ops added with it, run against the executor as a local process: no docker."""

from __future__ import annotations

import base64
import os
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


def test_interrupt_also_ends_background_jobs_that_ignore_sigint(client, tmp_path):
    pidfile = tmp_path / "bg.pid"
    script = f"trap '' TERM; sleep 300 & echo $! > {pidfile}; wait"
    client.send({"op": "run", "id": "bg", "argv": ["sh", "-c", script]})
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    client.send({"op": "interrupt", "id": "bg"})
    frames = [client.recv(), client.recv()]
    assert any(f["type"] == "exit" and f["interrupted"] for f in frames), frames
    child = int(pidfile.read_text())
    while _alive(child):
        assert time.monotonic() < deadline + 10, "a background job outlived the interrupt"
        time.sleep(0.05)


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


# -- files: chunks, listing, removal ------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_put_and_get_in_chunks(client, tmp_path):
    first = client.request({"op": "put_file", "id": "p", "path": str(tmp_path / "big"),
                            "data": _b64(b"a" * 10), "mode": 0o600, "offset": 0})  # fmt: skip
    assert first["offset"] == 0 and first["size"] == 10
    more = client.request({"op": "put_file", "id": "p", "path": str(tmp_path / "big"),
                           "data": _b64(b"b" * 5), "offset": 10})  # fmt: skip
    assert more["type"] == "ack" and (tmp_path / "big").read_bytes() == b"a" * 10 + b"b" * 5
    assert oct((tmp_path / "big").stat().st_mode & 0o777) == "0o600"
    wrong = client.request({"op": "put_file", "id": "p", "path": str(tmp_path / "big"),
                            "data": _b64(b"c"), "offset": 3})  # fmt: skip
    assert wrong["code"] == "io_error" and "changed during the upload" in wrong["message"]
    missing = client.request({"op": "put_file", "id": "p", "path": str(tmp_path / "nope"),
                              "data": _b64(b"c"), "offset": 3})  # fmt: skip
    assert missing["code"] == "io_error"
    part = client.request({"op": "get_file", "id": "g", "path": str(tmp_path / "big"),
                           "offset": 8, "length": 4})  # fmt: skip
    assert base64.b64decode(part["data"]) == b"aabb" and part["total"] == 15
    end = client.request({"op": "get_file", "id": "g", "path": str(tmp_path / "big"),
                          "offset": 15, "length": 4})  # fmt: skip
    assert end["size"] == 0 and end["total"] == 15
    capped = client.request({"op": "get_file", "id": "g", "path": str(tmp_path / "big"),
                             "offset": 0, "length": 4, "max_bytes": 14})  # fmt: skip
    assert capped["code"] == "too_large"


def test_list_files(client, tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("abc")
    (tmp_path / "d" / "sub" / "b.txt").write_text("b")
    os.symlink("/etc", tmp_path / "d" / "link")
    flat = client.request({"op": "list_files", "id": "l", "path": str(tmp_path / "d")})
    assert [(e["path"], e["kind"]) for e in flat["entries"]] == [
        ("a.txt", "file"), ("link", "symlink"), ("sub", "directory"),
    ]  # fmt: skip
    assert flat["entries"][0]["size"] == 3 and flat["truncated"] is False
    deep = client.request(
        {"op": "list_files", "id": "l", "path": str(tmp_path / "d"), "recursive": True}
    )
    assert [e["path"] for e in deep["entries"]] == ["a.txt", "link", "sub", "sub/b.txt"]
    cut = client.request({"op": "list_files", "id": "l", "path": str(tmp_path / "d"),
                          "recursive": True, "limit": 2})  # fmt: skip
    assert len(cut["entries"]) == 2 and cut["truncated"] is True
    one = client.request({"op": "list_files", "id": "l", "path": str(tmp_path / "d/a.txt")})
    assert [(e["path"], e["kind"]) for e in one["entries"]] == [("", "file")]
    gone = client.request({"op": "list_files", "id": "l", "path": str(tmp_path / "none")})
    assert gone["code"] == "not_found"


def test_remove_file_never_follows_symlinks(client, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("x")
    os.symlink(outside, tree / "sub" / "link")
    full = client.request({"op": "remove_file", "id": "x", "path": str(tree)})
    assert full["code"] == "io_error" and "not empty" in full["message"]
    done = client.request({"op": "remove_file", "id": "x", "path": str(tree), "recursive": True})
    assert done["type"] == "ack" and not tree.exists()
    assert (outside / "keep.txt").read_text() == "keep"
    link = tmp_path / "link"
    os.symlink(outside, link)
    assert client.request({"op": "remove_file", "id": "x", "path": str(link)})["type"] == "ack"
    assert outside.exists() and not link.exists()
    assert client.request({"op": "remove_file", "id": "x", "path": "."})["code"] == "io_error"
    assert client.request({"op": "remove_file", "id": "x", "path": "/proc/self/environ"})[
        "code"
    ] in ("io_error", "not_found")
    made = client.request({"op": "make_dir", "id": "m", "path": str(tmp_path / "n/e/w")})
    assert made["type"] == "ack" and (tmp_path / "n/e/w").is_dir()
