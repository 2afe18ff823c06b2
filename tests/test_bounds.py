"""The host's caps on what an execution or a build brings back (codeexec/_bounds.py)."""

from __future__ import annotations

import pytest

from codeexec import CodeexecError, ResultLimits
from codeexec._bounds import MARGIN, Budget, LineLog, clip_error, clip_text, cut_bytes, wire_size
from codeexec.models import StreamEvent
from codeexec.registry import SessionEntry


def test_result_limits_refuse_what_is_not_a_size() -> None:
    assert ResultLimits().displays == 32 * 2**20
    for bad in (-1, 1.5, True, "1m"):
        with pytest.raises(CodeexecError, match="ResultLimits.value must be a whole number"):
            ResultLimits(value=bad)  # type: ignore[arg-type]


def test_clip_text_keeps_the_head_and_says_how_much_went() -> None:
    assert clip_text("abc", 3, "value") == ("abc", False)
    assert clip_text("abcdef", 2, "value") == (
        "ab... [codeexec: value truncated: 4 more characters]",
        True,
    )


def test_wire_size_counts_utf8_bytes_and_structure() -> None:
    assert wire_size("abc") == 3 and wire_size("é") == 2 and wire_size("😀") == 4
    assert wire_size({"text/plain": "ab"}) == len("text/plain") + 2 + 16


def test_output_is_counted_in_utf8_bytes_on_the_host_as_in_the_executor() -> None:
    # ResultLimits.output is bytes everywhere: "é" is two of them, "😀" four.
    budget = Budget(ResultLimits(output=11))  # the cut falls inside a 4-byte character
    kept = []
    for _ in range(4):
        event = budget.take({"type": "stream", "id": "x", "name": "stdout", "text": "é😀" * 1000})
        if isinstance(event, StreamEvent):
            kept.append(event.text)
    text = "".join(kept)
    head = text.split("\n[codeexec:")[0]
    assert budget.truncated and text.count("truncated by the client after 4107 bytes") == 1
    assert len(head.encode()) == 11 + MARGIN - 1 and head.endswith("😀é")
    assert [cut_bytes("aé😀", n) for n in (0, 1, 2, 3, 6, 7, 9)] == [
        *("", "a", "a", "aé", "aé"),
        *("aé😀", "aé😀"),
    ]
    assert cut_bytes("a\ud800b", 4) == "a\ud800"  # a lone surrogate counts its 3 bytes


def test_clip_error_leaves_a_small_error_alone() -> None:
    error = {"ename": "E", "evalue": "m", "traceback": ["Traceback", "E: m"]}
    assert clip_error(error, 100) == (error, False)


def test_clip_error_keeps_head_and_tail_within_the_limit() -> None:
    lines = ["Traceback (most recent call last):"] + [f"frame {i} " + "." * 50 for i in range(1000)]
    kept, cut = clip_error({"ename": "E", "evalue": "v" * 10_000, "traceback": lines}, 8000)
    assert cut and kept["traceback"][0] == lines[0] and kept["traceback"][-1] == lines[-1]
    assert len(kept["evalue"]) < 2100
    assert len(kept["evalue"]) + sum(len(x) + 1 for x in kept["traceback"]) <= 8000 + 100


def test_line_log_keeps_the_last_lines_each_cut() -> None:
    log = LineLog(keep=3, width=5)
    for i in range(10):
        log.add(f"line {i} " + "x" * 100)
    assert log.count == 10 and len(log) == 3
    assert log.last is not None and log.last.startswith("line ")
    assert all(len(line) < 5 + 60 for line in log.tail())


def test_mcp_build_progress_is_a_bounded_log() -> None:
    entry = SessionEntry("s", ())
    for _ in range(5000):
        entry.progress("y" * 10_000)
    assert entry.lines.count == 5000 and len(entry.lines) == 200
    assert sum(map(len, entry.lines.tail())) < 200 * 1100
    assert "last step: yyy" in entry.building()
