"""Shell commands as a first-class call (issue 15), against the real engine:
``ContainerSession.run`` / ``run_stream``, ``codeexec sh`` and the MCP ``run_command``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import CommandResult, ContainerSession, InvalidOption, StreamEvent
from tests.conftest import RUN_ID, unique_name

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def session(docker_engine: None) -> Iterator[ContainerSession]:
    with ContainerSession.start(f"m{RUN_ID}-commands") as s:
        yield s


def codeexec(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codeexec", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_run_a_list_returns_output_exit_code_and_duration(session: ContainerSession) -> None:
    r = session.run(["ls", "-la", "/workspace"])
    assert isinstance(r, CommandResult)
    assert r.ok and r.exit_code == 0 and r.stderr == ""
    assert r.stdout.startswith("total ") and " ." in r.stdout
    assert r.duration_ms > 0 and r.timed_out is False
    failed = session.run(["ls", "/no/such/dir"])
    assert failed.exit_code == 2 and "No such file" in failed.stderr and not failed.ok


def test_a_list_is_not_interpolated_but_a_string_runs_in_sh(session: ContainerSession) -> None:
    assert session.run(["echo", "$HOME", "*", "a;b"]).stdout == "$HOME * a;b\n"
    assert session.run("echo $((6 * 7)) | tr 4 X").stdout == "X2\n"
    assert session.run("echo '$HOME' x", shell=False).stdout == "$HOME x\n"
    with pytest.raises(InvalidOption, match="shell=True takes the command as one string"):
        session.run(["echo", "x"], shell=True)
    with pytest.raises(InvalidOption, match="empty"):
        session.run("  ")


def test_runs_as_the_session_user_in_workspace_with_cwd_and_env(
    session: ContainerSession,
) -> None:
    r = session.run(["sh", "-c", 'id -u; pwd; echo "$X"; echo "${CODEEXEC_TOKEN:-no token}"'],
                    env={"X": "a b"})  # fmt: skip
    assert r.stdout.splitlines() == ["10001", "/workspace", "a b", "no token"]
    session.run(["mkdir", "-p", "sub"])
    assert session.run(["pwd"], cwd="sub").stdout == "/workspace/sub\n"
    missing = session.run(["true"], cwd="/nope")
    assert missing.exit_code == 2 and "/nope" in missing.stderr
    assert session.run(["no-such-program"]).exit_code == 127


def processes(session: ContainerSession) -> str:
    """The command lines of every process in the container (the image has no ps)."""
    return session.run("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout


def wait_gone(session: ContainerSession, needle: str) -> None:
    deadline = time.monotonic() + 20
    while needle in processes(session):
        assert time.monotonic() < deadline, f"{needle!r} still runs"
        time.sleep(0.1)


def test_background_jobs_of_a_command_that_exits_keep_running(session: ContainerSession) -> None:
    # Also the control for the checks below: `processes` sees a running sleep.
    r = session.run("sleep 304 > /dev/null 2>&1 & echo $! > bg.pid")
    assert r.ok and "sleep 304" in processes(session)
    session.run("kill $(cat bg.pid)")
    wait_gone(session, "sleep 304")


def test_timeout_kills_the_process_group(session: ContainerSession) -> None:
    started = time.monotonic()
    r = session.run("sleep 302 & sleep 302; echo never", timeout=1)
    assert r.timed_out and r.signal == 15 and r.exit_code == 143, r
    assert "never" not in r.stdout
    assert time.monotonic() - started < 30
    wait_gone(session, "sleep 302")  # nothing of the group is left


def test_output_streams_as_it_comes(session: ContainerSession) -> None:
    seen: list[tuple[float, str]] = []
    events = session.run_stream("echo first; sleep 1.5; echo second >&2")
    for item in events:
        if isinstance(item, StreamEvent):
            seen.append((time.monotonic(), item.name + ":" + item.text))
        else:
            result = item
    assert [text for _, text in seen] == ["stdout:first\n", "stderr:second\n"]
    assert seen[1][0] - seen[0][0] > 1.0  # the first line came before the command ended
    assert result.exit_code == 0 and result.stdout == ""
    chunks: list[str] = []
    r = session.run(["seq", "3"], on_output=lambda name, text: chunks.append(text))
    assert "".join(chunks) == r.stdout == "1\n2\n3\n"


def test_a_command_runs_while_python_code_runs(session: ContainerSession) -> None:
    import threading

    other = ContainerSession.attach(session.name)
    session.execute("kept = 41")
    slow = threading.Thread(target=lambda: session.execute("import time; time.sleep(3)"))
    try:
        slow.start()
        while other.ping()["busy"] is False and slow.is_alive():
            time.sleep(0.02)  # until the sleep runs (ping on the other connection)
        started = time.monotonic()
        assert other.run(["echo", "beside"]).stdout == "beside\n"
        assert time.monotonic() - started < 2.5  # it did not wait for the execution
        assert slow.is_alive()
    finally:
        slow.join(30)
        other.close()
    assert session.execute("kept + 1").value == "42"  # commands leave the namespace be


def test_output_limit_and_interrupt(session: ContainerSession) -> None:
    r = session.run("yes | head -c 1000000", output_limit=1000)
    assert r.truncated and len(r.stdout) < 1200 and "truncated after 1000 bytes" in r.stdout
    import threading

    timer = threading.Timer(1.0, session.interrupt)
    timer.start()
    try:
        r = session.run(["sleep", "300"], timeout=60)
    finally:
        timer.cancel()
    assert r.interrupted and r.exit_code == 130 and not r.timed_out


def test_cli_sh_passes_the_exit_code_and_streams(session: ContainerSession) -> None:
    done = codeexec("sh", session.name, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout) == (7, "out\n")
    assert "err\n" in done.stderr
    listed = codeexec("sh", session.name, "--", "echo", "$HOME")
    assert (listed.returncode, listed.stdout) == (0, "$HOME\n")
    shell = codeexec("sh", session.name, "-c", "echo $((1 + 2))")
    assert (shell.returncode, shell.stdout) == (0, "3\n")
    as_json = codeexec("sh", session.name, "--json", "--", "sh", "-c", "echo hi; exit 3")
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 3
    assert data["exit_code"] == 3 and data["stdout"] == "hi\n" and data["timed_out"] is False
    timed = codeexec("sh", session.name, "--timeout", "1", "--", "sleep", "60")
    assert timed.returncode == 124 and "timed out" in timed.stderr


def test_cli_sh_refuses_bad_input_before_any_docker_call() -> None:
    done = codeexec("sh", "no such name", "--", "ls")
    assert done.returncode == 2
    none = codeexec("sh", "default")
    assert none.returncode == 2 and "command" in none.stderr


def test_mcp_run_command(docker_engine: None) -> None:
    import anyio
    from mcp import Client

    from codeexec.mcp_server import build_server
    from codeexec.registry import SessionRegistry

    name = unique_name()
    registry = SessionRegistry(default_name=name)

    async def calls() -> None:
        async with Client(build_server(registry)) as client:
            done = await client.call_tool(
                "run_command", {"command": "echo $((2 + 3)); echo e >&2; exit 4"}
            )
            assert not done.is_error, done
            assert done.structured_content is not None
            out = done.structured_content
            assert (out["exit_code"], out["stdout"], out["stderr"]) == (4, "5\n", "e\n")
            listed = await client.call_tool("run_command", {"command": ["echo", "$HOME"]})
            assert listed.structured_content is not None
            assert listed.structured_content["stdout"] == "$HOME\n"
            timed = await client.call_tool("run_command", {"command": "sleep 30", "timeout": 1})
            assert timed.structured_content is not None
            assert timed.structured_content["timed_out"] is True

    try:
        anyio.run(calls)
    finally:
        entry = registry.known(name)
        if entry is not None and entry.session is not None:
            entry.session.close()  # the server's process would end here
        registry.close()


def test_commands_and_files_through_the_exec_relay(tmp_path: Path) -> None:
    # network="none": the host reaches the executor through `docker exec` pipes.
    with ContainerSession.start(unique_name(), network="none") as s:
        assert s.route == "exec"
        r = s.run("echo relayed; exit 5")
        assert (r.exit_code, r.stdout) == (5, "relayed\n")
        data = os.urandom(3 * 2**20 + 7)
        assert s.write_file("r.bin", data) == len(data)
        assert s.download("r.bin", f"{tmp_path}/new/").read_bytes() == data
        assert [f.name for f in s.files.list()] == ["r.bin"]


def test_ctrl_c_in_cli_sh_interrupts_the_command(session: ContainerSession) -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "codeexec", "sh", session.name, "--", "sleep", "301"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "sleep 301" not in processes(session):
            assert time.monotonic() < deadline and proc.poll() is None, "no sleep started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupting" in err
    wait_gone(session, "sleep 301")
