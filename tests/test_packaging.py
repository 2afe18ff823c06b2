"""What the package tells a user who installed it from a wheel, with no checkout.

Messages and help name commands and absolute URLs, never a path in the repository;
the README (the package's long description on an index) links absolutely; the
metadata names the licence, the project URLs and the supported Pythons.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from codeexec import _urls

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "codeexec"
REPO_PATHS = re.compile(
    r"\bdocs/|\w\.md\b|\bexecutor_image/|make_base_image\.sh"
    r"|\bmake (?:image|docs|test|demo|venv|check|bench|setup|unit)\b"
)
# Not messages: the suffix of Markdown files saved from results, and the script's name.
NOT_MESSAGES = {".md", "make_base_image.sh"}
# The faces: every docstring there is help a user or a model reads.
FACES = ("cli.py", "mcp_server.py")
FACE_PREFIXES = ("_cli_", "_mcp_")


def _user_strings(path: Path) -> list[tuple[int, str]]:
    """String literals a user can see: all but docstrings, which only faces show."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    face = path.name in FACES or path.name.startswith(FACE_PREFIXES)
    docstrings: set[int] = set()
    if not face:
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                if isinstance(body[0].value, ast.Constant):
                    docstrings.add(id(body[0].value))
    if face and isinstance(tree.body[0], ast.Expr):  # a face's module docstring is for us
        docstrings.add(id(tree.body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def test_messages_name_commands_and_urls_not_repository_paths() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text[:70]!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "_urls.py"
        for line, text in _user_strings(path)
        if REPO_PATHS.search(text.replace(_urls.DOCS, "")) and text not in NOT_MESSAGES
    ]
    assert found == []


def test_the_message_scan_catches_a_repository_path(tmp_path: Path) -> None:
    module = tmp_path / "_cli_x.py"
    module.write_text('"""Module: docs/cli.md."""\ndef f():\n    """See docs/mcp.md."""\n')
    assert [t for _, t in _user_strings(module) if REPO_PATHS.search(t)] == ["See docs/mcp.md."]


def test_project_urls_are_the_ones_messages_use() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    urls = dict(re.findall(r'^(\w+) = "(https://[^"]+)"$', text, re.M))
    assert urls["Repository"] == _urls.REPOSITORY
    assert urls["Documentation"] == _urls.doc("index")
    assert _urls.doc("configuration", "the-package-cache") == (
        f"{_urls.REPOSITORY}/blob/main/docs/configuration.md#the-package-cache"
    )


def test_readme_links_are_absolute() -> None:
    # The README is the long description on a package index, where relative links break.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)]+)\)", readme)
    assert targets
    assert [t for t in targets if not t.startswith(("https://", "#"))] == []
    for target in targets:
        if target.startswith(_urls.DOCS):
            page = target[len(_urls.DOCS) + 1 :].split("#")[0]
            assert (ROOT / "docs" / page).is_file(), target


def test_readme_renders_as_the_long_description() -> None:
    # What `twine check` runs: None means the index would show the raw text.
    from readme_renderer.markdown import render

    html = render((ROOT / "README.md").read_text(encoding="utf-8"), variant="GFM")
    assert html is not None
    assert f'href="{_urls.doc("configuration", "images-without-a-registry")}"' in html


def test_docs_anchors_used_in_messages_exist() -> None:
    # _urls.doc("configuration", "x") must land on a heading of that page.
    for path in sorted(PACKAGE.rglob("*.py")):
        for page, section in re.findall(
            r"doc\(\s*\"(\w[\w-]*)\",\s*\"([\w-]+)\"", path.read_text()
        ):
            text = (ROOT / "docs" / f"{page}.md").read_text(encoding="utf-8")
            anchors = {
                re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", text, re.M)
            }
            assert section in anchors, (path.name, page, section)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = dist.glob("codeexec-*.whl")
    return found


def test_the_wheel_ships_licence_marker_and_base_image_script(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "codeexec/py.typed" in names
    assert "codeexec/_executor_image/make_base_image.sh" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_wheel_metadata_tells_licence_urls_and_pythons(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (meta_name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(z.read(meta_name).decode())
    assert meta["License-Expression"] == "MIT"
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert meta["Requires-Python"] == ">=3.10"
    versions = [c.rsplit(" ", 1)[1] for c in classifiers if re.search(r":: 3\.\d+$", c)]
    # The lowest and highest are the ones CI runs (make pythons).
    assert versions[0] == "3.10" and versions[-1] == "3.13", versions
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert urls["Repository"] == _urls.REPOSITORY
    # No cap on Typer: it would downgrade Typer for every tool installed beside codeexec
    # (docs/performance.md, "Typer without a pin").
    requires = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    (typer,) = [r for r in requires if r.startswith("typer")]
    assert "<" not in typer, typer
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "](docs/" not in meta.get_payload()
