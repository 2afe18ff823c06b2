"""models.py: display decoding and saving, JSON-ready results (no Docker)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from codeexec.models import Display, ExecError, ExecResult

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


def test_from_wire_decodes_binary_types_and_keeps_text() -> None:
    display = Display.from_wire(
        {
            "image/png": base64.b64encode(PNG).decode(),
            "image/jpeg": base64.b64encode(b"\xff\xd8jpeg").decode(),
            "image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg'/>",
            "text/html": "<table></table>",
            "text/markdown": "# title",
            "text/plain": "<Thing>",
        }
    )
    assert display.data["image/png"] == PNG
    assert display.data["image/jpeg"] == b"\xff\xd8jpeg"
    assert display.data["image/svg+xml"] == "<svg xmlns='http://www.w3.org/2000/svg'/>"
    assert display.data["text/html"] == "<table></table>"
    assert display.mime_types == (
        "image/png",
        "image/jpeg",
        "image/svg+xml",
        "text/html",
        "text/markdown",
        "text/plain",
    )


def test_from_wire_turns_json_data_into_json_text() -> None:
    display = Display.from_wire({"application/json": {"a": [1, 2]}, "text/plain": "x"})
    assert json.loads(display.data["application/json"]) == {"a": [1, 2]}
    # A _repr_json_ that returned a JSON string already is kept as it is.
    assert Display.from_wire({"application/json": "[1]"}).data["application/json"] == "[1]"


def test_save_writes_each_rich_representation(tmp_path: Path) -> None:
    display = Display({"image/png": PNG, "text/html": "<b>é</b>", "text/plain": "plain"})
    paths = display.save(tmp_path / "new" / "dir", stem="fig")
    assert [p.name for p in paths] == ["fig.png", "fig.html"]
    assert paths[0].read_bytes() == PNG
    assert paths[1].read_text(encoding="utf-8") == "<b>é</b>"


def test_save_skips_plain_text_only_displays(tmp_path: Path) -> None:
    assert Display({"text/plain": "42"}).save(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_save_svg_markdown_json_as_text(tmp_path: Path) -> None:
    display = Display.from_wire(
        {"image/svg+xml": "<svg/>", "text/markdown": "*x*", "application/json": {"k": 1}}
    )
    names = {p.name: p.read_text() for p in display.save(tmp_path)}
    assert names == {"output.svg": "<svg/>", "output.md": "*x*", "output.json": '{"k": 1}'}


def test_save_displays_numbers_outputs(tmp_path: Path) -> None:
    result = ExecResult(
        status="ok",
        displays=(
            Display({"image/png": PNG, "text/plain": "<Figure>"}),
            Display({"text/plain": "only text"}),
            Display({"image/png": PNG + b"2", "text/plain": "<Figure>"}),
        ),
    )
    paths = result.save_displays(tmp_path)
    assert [p.name for p in paths] == ["output-1.png", "output-3.png"]
    assert (tmp_path / "output-3.png").read_bytes() == PNG + b"2"


def test_to_dict_is_json_ready_with_base64_images() -> None:
    result = ExecResult(
        status="error",
        stdout="out\n",
        value=None,
        error=ExecError(
            "ValueError", "bad", ("Traceback (most recent call last):", "ValueError: bad")
        ),
        displays=(Display({"image/png": PNG, "text/plain": "<Figure>"}),),
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data["status"] == "error" and data["stdout"] == "out\n"
    assert data["displays"] == [
        {"image/png": base64.b64encode(PNG).decode("ascii"), "text/plain": "<Figure>"}
    ]
    assert data["error"] == {
        "ename": "ValueError",
        "evalue": "bad",
        "traceback": ["Traceback (most recent call last):", "ValueError: bad"],
    }
    # The result itself is untouched: still bytes.
    assert result.displays[0].data["image/png"] == PNG


def test_exec_error_format() -> None:
    assert ExecError("E", "m", ("line 1", "E: m")).format() == "line 1\nE: m"
    assert ExecError("E", "m", ("line 1\n", "E: m\n")).format() == "line 1\nE: m"
    assert ExecError("E", "m").format() == "E: m"
    assert ExecError("E", "").format() == "E"
