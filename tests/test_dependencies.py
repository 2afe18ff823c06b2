"""Every package codeexec imports is declared in pyproject.toml (or is the stdlib).

A module that arrives only because another dependency needs it today (``anyio``,
``pydantic``, ``mcp_types`` through ``mcp``) can vanish or change with that
dependency's next release; declaring what the code imports keeps installs honest.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "codeexec"
OWN = {"codeexec", "codeexec_executor"}


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """Distribution names in [project] dependencies and every extra but ``dev``."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    if sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads(text)["project"]
        reqs = list(project["dependencies"])
        for extra, more in project.get("optional-dependencies", {}).items():
            if extra != "dev":
                reqs += more
    else:  # 3.10 has no tomllib: the installed metadata is built from the same file
        requires = importlib.metadata.requires("codeexec") or []
        reqs = [r for r in requires if not re.search(r"extra\s*==\s*['\"]dev['\"]", r)]
    return {_canonical(re.split(r"[\s<>=!~\[;(]", r.strip(), maxsplit=1)[0]) for r in reqs}


def test_every_third_party_import_is_a_declared_dependency() -> None:
    imported: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _top_level_imports(path):
            imported.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    third_party = {n for n in imported if n not in sys.stdlib_module_names and n not in OWN}
    assert third_party, "the scan found no third-party import: it is broken"
    dists = importlib.metadata.packages_distributions()
    declared = _declared()
    missing = sorted(
        f"{name} (from {', '.join(sorted(imported[name]))})"
        for name in third_party
        if not {_canonical(d) for d in dists.get(name, [name])} & declared
    )
    assert missing == [], "imported but not declared in pyproject.toml dependencies"


def test_the_scan_sees_an_undeclared_import(tmp_path: Path) -> None:
    # The check above must be able to fail: a module importing something no
    # dependency provides is reported.
    module = tmp_path / "m.py"
    module.write_text("import json\nfrom anyio import to_thread\nimport not_a_dependency.sub\n")
    assert _top_level_imports(module) == {"json", "anyio", "not_a_dependency"}
    assert "not-a-dependency" not in _declared()
    assert "anyio" in _declared()
