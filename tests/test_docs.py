"""The docs are tested artefacts: their links resolve and the tests they cite exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def _test_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.update(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.MULTILINE))
    return names


def test_every_cited_test_exists() -> None:
    existing = _test_names()
    security = (ROOT / "docs" / "security.md").read_text()
    assert len(set(re.findall(r"\b(test_\w+)\b", security))) >= 10  # each guarantee cites one
    missing = {
        (doc.name, name)
        for doc in DOCS
        for name in re.findall(r"\b(test_\w+)\b", doc.read_text())
        if name not in existing
        and not (ROOT / "tests" / f"{name}.py").exists()
        and not list((ROOT / "tests").rglob(f"{name}.py"))
    }
    assert not missing, f"docs cite tests that do not exist: {sorted(missing)}"


def test_relative_links_resolve() -> None:
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append((doc.name, target))
    assert not broken, f"broken links: {broken}"


def test_every_doc_page_is_in_the_index() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    for doc in DOCS:
        if doc.parent.name == "docs" and doc.name != "index.md":
            assert f"({doc.name})" in index, doc.name
