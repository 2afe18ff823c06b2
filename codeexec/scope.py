"""Which sessions a client of the core may reach, and how many it may run.

A model behind an MCP client may be prompt-injected, so its server must not reach
the sessions a person started from the CLI, nor those of other servers. Each
server has a **scope**: the containers it starts carry the label
``codeexec.scope=<scope>`` (set by the core, ``ContainerSession.start(scope=)``),
and it reaches only those, plus session names a person shares with
``codeexec mcp --share NAME`` (or every session with ``--share-all``). A session
out of reach looks exactly like one that does not exist.

The scope is a label, not a process: a server restarted with ``--persist`` gets
the same scope (see :func:`default_scope`) and so reaches what its earlier run
left running.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from .docker import LABEL_SCOPE
from .errors import CodeexecError
from .models import SessionInfo

DEFAULT_MAX_SESSIONS = 4
_SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


def validate_scope(scope: str) -> str:
    if not isinstance(scope, str) or not _SCOPE.match(scope):
        raise CodeexecError(
            f"invalid scope {scope!r}: use 1-40 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return scope


def default_scope(*, persist: bool) -> str:
    """A fresh random scope; with ``persist``, one that a restart finds again.

    A server that removes its sessions on exit needs no successor, so it gets a
    scope no other server has. A ``--persist`` server must find its sessions after
    a restart without being told anything, so its scope is derived from what
    stays the same across restarts of one client's configuration and differs
    between most unrelated ones: the user and the working directory the client
    starts it in (clients such as Cursor and VS Code start servers in the
    project's folder). Servers that must stay apart in one folder pass ``--scope``.
    """
    if not persist:
        return f"mcp-{secrets.token_hex(6)}"
    seed = f"{os.geteuid()}\0{os.path.realpath(os.getcwd())}"
    return f"mcp-{hashlib.sha256(seed.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Reach:
    """A server's scope and the session names shared with it."""

    scope: str
    shared: frozenset[str] = frozenset()
    share_all: bool = False

    @classmethod
    def of(cls, scope: str, shared: Iterable[str] = (), share_all: bool = False) -> Reach:
        return cls(validate_scope(scope), frozenset(shared), share_all)

    def shares(self, name: str) -> bool:
        """Whether ``name`` is shared: reachable whatever its scope."""
        return self.share_all or name in self.shared

    def reaches(self, info: SessionInfo) -> bool:
        return self.owns(info) or self.shares(info.name)

    def owns(self, info: SessionInfo) -> bool:
        """Started in this scope (by this server or an earlier run of it)."""
        return info.labels.get(LABEL_SCOPE) == self.scope

    def attach_scope(self, name: str) -> str | None:
        """The ``scope`` to pass to ``ContainerSession.attach``: None reaches any."""
        return None if self.shares(name) else self.scope


def check_quota(name: str, live: set[str], max_sessions: int) -> None:
    """Refuse to start ``name`` when ``live`` (this scope's sessions) fills the quota."""
    if name in live or len(live) < max_sessions:
        return
    raise CodeexecError(
        f"this server may run at most {max_sessions} session(s) at once and runs "
        f"{', '.join(sorted(live))}: stop one with stop_code_executer(name=...), or use "
        "one of them (the limit is `codeexec mcp --max-sessions`)"
    )
