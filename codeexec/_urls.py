"""Where codeexec lives on the web: the one place messages and docs take links from.

A user who installed a wheel has no checkout, so a message never names a path in
the repository (``docs/configuration.md``, ``executor_image/...``): it names a
command, or a page under :data:`DOCS`. The project has no site of its own yet: the
docs are the Markdown pages of its repository, the same address pyproject.toml
gives as the project URLs (tests/test_packaging.py keeps them equal).
"""

from __future__ import annotations

REPOSITORY = "https://github.com/codeexec/codeexec"
DOCS = f"{REPOSITORY}/blob/main/docs"


def doc(page: str, section: str = "") -> str:
    """The absolute URL of a docs page (``"configuration"``), optionally of a section."""
    return f"{DOCS}/{page}.md" + (f"#{section}" if section else "")
