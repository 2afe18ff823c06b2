"""A dependency set is installed on top of the closest env image built before it.

On a base image unique to the run (tests/integration/test_uv_build.py), so no env
image of another run or helper can be a candidate. Small pure-Python packages keep
each build a few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codeexec import ImageBuildError
from codeexec._imagereuse import commit_message, env_labels, label_changes
from codeexec.docker import Docker
from codeexec.images import ensure_image, find_image
from tests.conftest import RUN_ID, unique_name
from tests.integration.test_uv_build import _base_of_this_run

pytestmark = pytest.mark.docker


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)


def _inspect(ref: str) -> dict[str, Any]:
    out = _docker("image", "inspect", ref)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)[0]
    return result


def _python(image: str, code: str) -> str:
    out = _docker("run", "--rm", "--network", "none", image, "python", "-c", code)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _build(base: str, deps: list[str]) -> tuple[str, str]:
    lines: list[str] = []
    tag = ensure_image(Docker(), base_image=base, dependencies=deps, on_line=lines.append)
    return tag, "\n".join(lines)


@pytest.fixture(scope="module")
def reuse_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _base_of_this_run("reuse", tmp_path_factory.mktemp("reusebase")) as base:
        yield base


@pytest.fixture(scope="module")
def first(reuse_base: str) -> Iterator[str]:
    """The env image of ``six`` on this run's base."""
    tag, _ = _build(reuse_base, ["six"])
    try:
        yield tag
    finally:
        _docker("rmi", "-f", tag)


@pytest.fixture
def removed_after() -> Iterator[list[str]]:
    tags: list[str] = []
    yield tags
    for tag in tags:
        _docker("rmi", "-f", tag)


def test_a_superset_is_installed_on_the_first_image(
    reuse_base: str, first: str, removed_after: list[str]
) -> None:
    parent = _inspect(first)
    second, log = _build(reuse_base, ["idna", "six"])
    removed_after.append(second)
    child = _inspect(second)
    assert f"on {parent['Id'][:19]} (holding 1)" in log
    assert "Requirement already satisfied: six" in log
    # The child is the first image plus one layer: the difference pip installed.
    assert child["RootFS"]["Layers"][:-1] == parent["RootFS"]["Layers"]
    assert "Installing collected packages: idna" in log and "Downloading six" not in log
    labels = child["Config"]["Labels"]
    assert json.loads(labels["codeexec.deps"]) == ["idna", "six"]
    assert labels["codeexec.base-id"] == parent["Config"]["Labels"]["codeexec.base-id"]
    assert labels["codeexec.stage"] == parent["Config"]["Labels"]["codeexec.stage"]
    assert child["Config"]["User"] == "10001:10001"
    assert child["Config"]["Cmd"] == parent["Config"]["Cmd"]
    assert find_image(Docker(), base_image=reuse_base, dependencies=["idna", "six"]).exists
    assert _python(second, "import idna, six; print(idna.__name__, six.__name__)") == "idna six"
    # The build user still owns the venv; the session user cannot rewrite it.
    owner = _python(second, "import os, idna; print(os.stat(idna.__file__).st_uid)")
    assert owner == "10002"


def test_a_removed_parent_leaves_the_child_whole(reuse_base: str, removed_after: list[str]) -> None:
    parent, _ = _build(reuse_base, ["packaging"])
    removed_after.append(parent)
    child, log = _build(reuse_base, ["packaging", "six"])
    removed_after.append(child)
    assert "(holding 1)" in log
    assert _docker("rmi", parent).returncode == 0  # untags; docker keeps the shared layers
    assert _python(child, "import packaging, six; print('ok')") == "ok"


def test_turned_off_reuse_builds_from_the_base(
    reuse_base: str, first: str, removed_after: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEEXEC_BUILD_REUSE", "0")
    second, log = _build(reuse_base, ["six", "six>=1.0"])
    removed_after.append(second)
    assert "holding" not in log and "Step 1/" in log
    parent_layers = _inspect(first)["RootFS"]["Layers"]
    assert parent_layers[-1] not in _inspect(second)["RootFS"]["Layers"]
    assert _python(second, "import six; print('ok')") == "ok"


def test_a_failed_install_on_an_image_leaves_nothing_and_the_image_intact(
    reuse_base: str, first: str
) -> None:
    before = _inspect(first)["Id"]
    deps = ["six", "six==0.0.0.1"]
    found = find_image(Docker(), base_image=reuse_base, dependencies=deps)
    lines: list[str] = []
    with pytest.raises(ImageBuildError) as caught:
        ensure_image(Docker(), base_image=reuse_base, dependencies=deps, on_line=lines.append)
    assert any(line.endswith(f"on {before[:19]} (holding 1)") for line in lines), lines
    assert "six==0.0.0.1" in caught.value.log_tail
    name = f"codeexec-build-{found.context.digest[:12]}"
    assert _docker("ps", "-aq", "--filter", f"name={name}").stdout == ""
    assert not Docker().image_exists(found.tag)
    assert _inspect(first)["Id"] == before
    # No image of any kind, dangling or intermediate, carries the failed set's label.
    ids = _docker("images", "-aq", "--no-trunc", "--filter", "label=codeexec.deps").stdout
    fmt = '{{index .Config.Labels "codeexec.deps"}}'
    for image_id in set(ids.split()):
        label = _docker("image", "inspect", "--format", fmt, image_id).stdout.strip()
        assert not label or json.loads(label) != deps


def test_images_with_copied_labels_are_not_built_on(
    reuse_base: str, tmp_path: Path, removed_after: list[str]
) -> None:
    """Every label of an env image of this base and stage, on two images codeexec did
    not commit there: one built FROM this run's base (as a user's Dockerfile would be,
    labels inherited), and one committed with codeexec's own comment on another base
    with the same files (the offline base)."""
    deps = ["idna", "packaging"]
    found = find_image(Docker(), base_image=reuse_base, dependencies=deps)
    changes = label_changes(env_labels(["idna"], reuse_base, found.base_id, found.context.stage))
    derived = f"codeexec-test-derived:{RUN_ID}"
    (tmp_path / "f").write_text("x")
    (tmp_path / "Dockerfile").write_text(
        f"FROM {reuse_base}\nCOPY f /f\n" + "".join(f"{c}\n" for c in changes)
    )
    built = _docker("build", "-q", "--label", "codeexec.test=1", "-t", derived, str(tmp_path))
    assert built.returncode == 0, built.stderr
    removed_after.append(derived)
    other = f"codeexec-test-otherbase:{RUN_ID}"
    container = unique_name()
    made = _docker("create", "--name", container, "--label", "codeexec.test=1",
                   os.environ["CODEEXEC_BASE_IMAGE"], "true")  # fmt: skip
    assert made.returncode == 0, made.stderr
    try:
        message = commit_message(found.context.stage)
        args = [a for c in changes for a in ("--change", c)]
        committed = _docker("commit", "--message", message, *args, container, other)
        assert committed.returncode == 0, committed.stderr
    finally:
        _docker("rm", "-f", container)
    removed_after.append(other)
    for image in (derived, other):
        assert _inspect(image)["Config"]["Labels"]["codeexec.stage"] == found.context.stage
    tag, log = _build(reuse_base, deps)
    removed_after.append(tag)
    assert "holding" not in log and "Step 1/" in log  # from the base, a new trusted stage
    assert _python(tag, "import idna, packaging; print('ok')") == "ok"
