"""Notebook habits in the real executor, run as a local process (no docker):
`!command` lines, `%magic` refusals, `_` and the execution count, `input()`
answered by the client, display ids and `clear_output` (docs/outputs.md,
docs/protocol.md). Raw frames through the contract harness, then the real
``ExecutorClient``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from codeexec._events import ClearOutput
from codeexec.client import ExecutorClient
from codeexec.models import Display, ExecResult, ResultLimits
from tests.test_executor_contract import DEADLINE, Executor, _stdout


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    ex = Executor(tmp_path_factory.mktemp("workspace"))
    yield ex
    ex.stop()


@pytest.fixture
def client(executor: Executor) -> Iterator[ExecutorClient]:
    with ExecutorClient.connect_tcp("127.0.0.1", executor.port, executor.token) as c:
        yield c


# -- !command lines --------------------------------------------------------------------


def test_shell_lines_run_in_order_with_python(client: ExecutorClient) -> None:
    code = "print('before')\n!echo from-shell; echo oops >&2\nprint('after')\n"
    result = client.execute(code)
    assert result.status == "ok", result.error
    assert result.stdout == "before\nfrom-shell\nafter\n"
    assert result.stderr == "oops\n"


def test_shell_exit_status_is_kept_not_raised(client: ExecutorClient) -> None:
    result = client.execute("!exit 3\n_exit_code")
    assert (result.status, result.value) == ("ok", "3")
    assert client.execute("!true\n_exit_code").value == "0"


def test_shell_lines_inside_blocks_and_capture(client: ExecutorClient) -> None:
    code = (
        "for i in range(2):\n"
        "    !echo 'it''s' \"$HOME\" | tr a-z A-Z\n"
        "files = !printf 'a\\nb\\n'\n"
        "files"
    )
    result = client.execute(code)
    assert result.status == "ok", result.error
    assert result.stdout.count("ITS ") == 2
    assert result.value == "['a', 'b']"


def test_bang_inside_strings_and_brackets_is_python(client: ExecutorClient) -> None:
    code = 's = """\n!not a command\n"""\nt = (1\n != 2)\n(s, t)'
    result = client.execute(code)
    assert result.value == "('\\n!not a command\\n', True)"


def test_a_shell_command_is_interrupted_by_the_timeout(client: ExecutorClient) -> None:
    result = client.execute("!sleep 30\nprint('not reached')", timeout=1)
    assert result.status == "timeout" and not result.restarted
    assert "not reached" not in result.stdout


# -- %magics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line", ["%matplotlib inline", "%%bash", "%timeit 1", "if True:\n    %pip install six"]
)
def test_other_magics_are_refused_before_anything_runs(client: ExecutorClient, line: str) -> None:
    result = client.execute(f"print('ran')\n{line}\n")
    assert result.status == "error" and result.error is not None
    assert result.error.ename == "UsageError"
    assert re.match(r"UsageError: line [23]: .*%", result.error.traceback[-1])
    assert "`!command`" in result.error.evalue and "%pip install" in result.error.evalue
    assert result.stdout == ""


# -- _ and the execution count ------------------------------------------------------------


def test_underscore_holds_the_last_values(client: ExecutorClient) -> None:
    client.execute("10")
    client.execute("20")
    client.execute("x = 5")  # no value: _ stays
    client.execute("30")
    assert client.execute("(_, __, ___)").value == "(30, 20, 10)"


def test_underscore_rebound_by_the_code_is_left_alone(client: ExecutorClient) -> None:
    client.execute("_ = 'mine'")
    client.execute("99")
    assert client.execute("_").value == "'mine'"
    client.execute("del _, __, ___")
    client.execute("7")
    assert client.execute("_").value == "7"


def test_the_execution_count_grows_per_cell(client: ExecutorClient) -> None:
    first = client.execute("1").execution_count
    assert isinstance(first, int) and first >= 1
    assert client.execute("raise ValueError").execution_count == first + 1
    assert client.execute("2", store_history=False).execution_count == first + 1
    assert client.execute("_").value == "1"  # the uncounted run did not set _
    assert client.execute("3").execution_count == first + 3


def test_the_count_is_in_the_raw_result_frame(executor: Executor) -> None:
    raw = executor.connect()
    _, result = raw.exec("1")
    _, again = raw.exec("2", id="d")
    assert again["execution_count"] == result["execution_count"] + 1


# -- input() ---------------------------------------------------------------------------------


def test_input_is_answered_by_the_handler(client: ExecutorClient) -> None:
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return f"answer {len(prompts)}"

    code = "print('hi')\na = input('Name? ')\nb = input()\nprint(a, '|', b)"
    result = client.execute(code, on_input=answer)
    assert result.status == "ok", result.error
    assert prompts == ["Name? ", ""]
    assert result.stdout == "hi\nanswer 1 | answer 2\n"


def test_input_without_a_handler_says_how_to_give_one(client: ExecutorClient) -> None:
    result = client.execute("input('x? ')")
    assert result.error is not None and result.error.ename == "EOFError"
    assert "on_input" in result.error.evalue


def test_a_handler_returning_none_is_end_of_input(client: ExecutorClient) -> None:
    result = client.execute("input()", on_input=lambda prompt: None)
    assert result.error is not None and result.error.ename == "EOFError"


def test_a_long_answer_arrives_whole(client: ExecutorClient) -> None:
    # Longer than a pipe's buffer: the worker reads the reply in several pieces.
    answer = "é" * 300_000
    result = client.execute("s = input()\n(len(s), s == 'é' * 300_000)", on_input=lambda p: answer)
    assert result.value == "(300000, True)"


def test_a_failing_handler_interrupts_the_code_and_raises(client: ExecutorClient) -> None:
    def broken(prompt: str) -> str:
        raise RuntimeError("no terminal")

    with pytest.raises(RuntimeError, match="no terminal"):
        client.execute("input('x? ')\nprint('not reached')", on_input=broken)
    assert client.execute("1 + 1").value == "2"  # interrupted and drained: ready again


def test_input_in_another_thread_and_a_timeout_while_waiting(
    client: ExecutorClient, executor: Executor
) -> None:
    code = (
        "import threading\nt = threading.Thread(target=input, args=('t? ',))\nt.start()\nt.join()"
    )
    threaded = client.execute(code, on_input=str.upper)  # a handler, but not this thread's
    assert "input() is answered only in the cell's own thread" in threaded.stderr

    def late(prompt: str) -> str:
        # Answer only once the timeout has ended the execution.
        with ExecutorClient.connect_tcp("127.0.0.1", executor.port, executor.token) as probe:
            deadline = time.monotonic() + DEADLINE
            while probe.ping()["busy"] and time.monotonic() < deadline:
                time.sleep(0.01)
        return "late"

    result = client.execute("input('wait? ')", timeout=1, on_input=late)
    assert result.status == "timeout"
    # The late answer was dropped: the session stays usable.
    assert client.execute("1 + 1").value == "2"


def test_replies_nobody_asked_for_are_dropped_or_refused(executor: Executor) -> None:
    raw = executor.connect()
    raw.send({"op": "input_reply", "id": "zz", "seq": 1, "value": "late"})  # dropped
    raw.send({"op": "input_reply", "id": "zz", "seq": 1, "value": 5})
    frame = raw.recv()
    assert frame["type"] == "error" and frame["code"] == "bad_request"
    assert "'value' must be a string" in frame["message"]
    events, result = raw.exec("1 + 1")
    assert (events, result["value"]) == ([], "2")


def test_input_request_frames_on_the_wire(executor: Executor) -> None:
    raw = executor.connect()
    raw.send({"op": "exec", "id": "i", "code": "print(input('P> '))", "allow_stdin": True})
    request = raw.recv()
    assert request["type"] == "input_request" and request["prompt"] == "P> "
    raw.send({"op": "input_reply", "id": "i", "seq": request["seq"], "value": "ok"})
    events, result = raw.collect("i")
    assert result["status"] == "ok" and _stdout(events) == "ok\n"


# -- display ids and clear_output ------------------------------------------------------------


def test_update_display_replaces_the_displayed_data(client: ExecutorClient) -> None:
    code = (
        "h = display('step 1', display_id=True)\n"
        "display('other')\n"
        "h.update('step 2')\n"
        "update_display('step 3', display_id=h.display_id)\n"
        "h"
    )
    events: list[Display] = []
    result = client.execute(code, on_display=events.append)
    assert result.status == "ok", result.error
    assert [d.data["text/plain"] for d in result.displays] == ["'step 3'", "'other'"]
    assert result.displays[0].display_id == events[0].display_id
    assert [e.update for e in events] == [False, False, True, True]
    assert result.value is not None and "DisplayHandle" in result.value


def test_an_update_of_an_earlier_cells_display_is_appended(client: ExecutorClient) -> None:
    client.execute("display(1, display_id='counter')")
    result = client.execute("update_display(2, display_id='counter')")
    (shown,) = result.displays
    assert (shown.data["text/plain"], shown.display_id, shown.update) == ("2", "counter", True)


def test_clear_output_drops_what_came_before(client: ExecutorClient) -> None:
    result = client.execute("print('old')\ndisplay('x')\nclear_output()\nprint('new')")
    assert (result.stdout, result.displays) == ("new\n", ())
    waited = client.execute("print('old')\nclear_output(wait=True)\nprint('new')")
    assert waited.stdout == "new\n"
    kept = client.execute("print('stays')\nclear_output(wait=True)")
    assert kept.stdout == "stays\n"  # nothing came after: nothing is cleared


def test_clear_output_is_an_event_in_the_stream(client: ExecutorClient) -> None:
    events = list(client.stream("print('a')\nclear_output()\nprint('b')"))
    kinds = [type(e).__name__ for e in events]
    # print() may arrive in pieces: one kind per run of events.
    runs = [kind for i, kind in enumerate(kinds) if i == 0 or kinds[i - 1] != kind]
    assert runs == ["StreamEvent", "ClearOutput", "StreamEvent", "ExecResult"]
    assert ClearOutput(wait=False) in events


def test_clear_output_floods_stop_at_the_display_cap(client: ExecutorClient) -> None:
    # Each clear counts like an empty display (512 bytes): 10 KiB allow about 20.
    events = list(
        client.stream(
            "for _ in range(1000):\n    clear_output()",
            limits=ResultLimits(displays=10_240),
        )
    )
    clears = [e for e in events if isinstance(e, ClearOutput)]
    assert 0 < len(clears) <= 20
    result = events[-1]
    assert isinstance(result, ExecResult) and result.truncated
