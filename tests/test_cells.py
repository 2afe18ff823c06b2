"""The host's reading of a notebook cell (``codeexec/_cells.py``): where the ``%pip
install`` lines are, and how events fold into one ``ExecResult``."""

from __future__ import annotations

import pytest

from codeexec import ClearOutput, Display, ExecResult, InvalidDependency, StreamEvent
from codeexec._cells import collect, split


def test_a_cell_without_pip_lines_is_one_part() -> None:
    code = "x = 1\n!pip list\nprint('%pip install x')"
    assert split(code) == [("python", code)]


def test_pip_lines_cut_the_cell_and_keep_line_numbers() -> None:
    code = "a = 1\n%pip install -q six 'attrs>=20'\nimport six\n%pip install --quiet idna\n"
    assert split(code) == [
        ("python", "a = 1\n"),
        ("pip", ("six", "attrs>=20")),
        ("python", "\n\nimport six\n"),
        ("pip", ("idna",)),
    ]


def test_pip_lines_in_strings_brackets_or_blocks_are_not_cut() -> None:
    code = (
        's = """\n%pip install six\n"""\n'
        "t = (1,\n%pip install six\n)\n"
        "if x:\n    %pip install six\n"
    )
    assert split(code) == [("python", code)]


def test_other_pip_commands_are_left_to_the_executor() -> None:
    code = "%pip list\n"
    assert split(code) == [("python", code)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%pip install", "no package"),
        ("%pip install --index-url http://evil six", "the option '--index-url'"),
        ("%pip install 'six", "cannot read"),
    ],
)
def test_malformed_pip_lines_are_refused(line: str, message: str) -> None:
    with pytest.raises(InvalidDependency, match=message):
        split(f"x = 1\n{line}\n")


def _result(**kw: object) -> ExecResult:
    return ExecResult(status="ok", **kw)  # type: ignore[arg-type]


def test_collect_keeps_output_and_the_last_result() -> None:
    seen: list[tuple[str, str]] = []
    events = [StreamEvent("stdout", "a"), StreamEvent("stderr", "b"), _result(value="1")]
    result = collect(events, lambda name, text: seen.append((name, text)))
    assert (result.stdout, result.stderr, result.value) == ("a", "b", "1")
    assert seen == [("stdout", "a"), ("stderr", "b")]


def test_collect_clears_and_waits_to_clear() -> None:
    old, new = StreamEvent("stdout", "old"), StreamEvent("stdout", "new")
    shown = Display({"text/plain": "d"})
    assert collect([old, shown, ClearOutput(), new, _result()]).stdout == "new"
    assert collect([old, shown, ClearOutput(), _result()]).displays == ()
    assert collect([old, ClearOutput(wait=True), new, _result()]).stdout == "new"
    assert collect([old, ClearOutput(wait=True), _result()]).stdout == "old"


def test_collect_updates_displays_in_place() -> None:
    first = Display({"text/plain": "1"}, display_id="p")
    other = Display({"text/plain": "x"})
    update = Display({"text/plain": "2"}, display_id="p", update=True)
    result = collect([first, other, update, _result()])
    assert result.displays == (Display({"text/plain": "2"}, display_id="p"), other)
    elsewhere = Display({"text/plain": "3"}, display_id="q", update=True)
    assert collect([elsewhere, _result()]).displays == (elsewhere,)
