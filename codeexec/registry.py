"""The sessions of one client of the core: start or attach within a scope, by name.

``SessionRegistry`` is what an MCP server (one per client) keeps: the sessions it
started or attached to, which is current, which containers it owns (and removes
on ``close``), how many its scope runs (``scope.check_quota``), and which are gone
(forgotten, so a name starts afresh). Starts run in background threads so a face
can answer before a long image build ends; tool threads and build threads share
it, so every change goes through one lock. Its messages name the MCP tools that
fix each situation: it is the MCP face's state, kept in the core so it is tested
and layered with the core.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

from typing_extensions import TypedDict  # pydantic needs it for nested ones before 3.12

from ._bounds import MCP_LIMITS, LineLog
from .docker import Docker
from .errors import CodeexecError, NoSuchSession, SessionExists
from .maintenance import remove_containers, running_in_scope
from .models import ResultLimits, SessionInfo
from .options import SessionOptions
from .scope import DEFAULT_MAX_SESSIONS, Reach, check_quota, default_scope
from .session import ContainerSession, list_sessions, validate_name

log = logging.getLogger("codeexec.mcp")


# One session as ``rows`` lists it: the rows of MCP ``list_sessions``'s output (no
# docstring, which would change that output schema).
class SessionRow(TypedDict):
    name: str
    status: str
    container: str
    dependencies: list[str]
    created: str
    used_here: bool


# -- the session registry ------------------------------------------------------------


@dataclass
class SessionEntry:
    """One session this server knows: still building, ready, or failed to start."""

    name: str
    dependencies: tuple[str, ...]
    done: threading.Event = field(default_factory=threading.Event)
    session: ContainerSession | None = None
    error: CodeexecError | None = None
    lines: LineLog = field(default_factory=LineLog)  # bounded: a build may print without end
    started: float = field(default_factory=time.monotonic)
    stop_when_built: bool = False

    def building(self) -> str:
        last = (self.lines.last or "preparing")[-200:]
        return (
            f"session {self.name!r} is still building its image "
            f"({time.monotonic() - self.started:.0f} s so far; last step: {last})"
        )

    def progress(self, line: str) -> None:
        if line.strip():
            log.info("[%s] %s", self.name, self.lines.add(line))


class SessionRegistry:
    """The sessions of one MCP server; safe to use from the SDK's worker threads.

    Containers started here are removed by :meth:`close` (one ``docker rm -f``)
    unless ``persist``; sessions attached to (``reuse_code_executer``) are left alone.
    It reaches only the sessions of its scope and the shared names (``reach``,
    ``scope.py``), and runs at most ``max_sessions`` of its scope at once. New
    sessions get ``options`` (default: the defaults, with ``_bounds.MCP_LIMITS``),
    with their own dependencies and the scope. The default session is named after
    the scope unless ``default_name`` says otherwise.
    """

    def __init__(
        self,
        *,
        docker: Docker | None = None,
        persist: bool = False,
        pool_size: int = 0,
        default_name: str | None = None,
        reach: Reach | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        options: SessionOptions | None = None,
    ) -> None:
        self.docker = docker or Docker()
        self.options = options or SessionOptions(result_limits=MCP_LIMITS)
        self.persist = persist
        self.reach = reach or Reach(default_scope(persist=persist))
        self.max_sessions = max_sessions
        self.default_name = validate_name(default_name or self.reach.scope)
        self.current = self.default_name
        self._lock = threading.RLock()  # re-entrant: the SIGTERM handler may interrupt a holder
        self._entries: dict[str, SessionEntry] = {}
        self._owned: dict[str, str] = {}  # container id -> session name
        self._closed = False
        self.pool_size = max(0, pool_size)  # warm containers per dependency set

    @property
    def result_limits(self) -> ResultLimits:
        """What one call keeps of a result (over MCP it goes into the model's context)."""
        return self.options.result_limits or MCP_LIMITS

    def start(self, name: str, dependencies: tuple[str, ...]) -> SessionEntry:
        """The session's entry, starting it in a background thread if it is new."""
        with self._lock:
            entry = self._entries.get(name)
        if (
            entry is not None
            and entry.done.is_set()
            and (entry.error is not None or entry.session is None or not entry.session.is_running())
        ):
            self._forget(entry)  # failed, or its container is gone: start afresh
            entry = None
        live = self._scope_names() if entry is None else set()
        with self._lock:
            if self._closed:
                raise CodeexecError("the MCP server is shutting down")
            entry = self._entries.get(name, entry)
            if entry is None:
                building = {n for n, e in self._entries.items() if not e.done.is_set()}
                check_quota(name, live | building | set(self._owned.values()), self.max_sessions)
                entry = self._entries[name] = SessionEntry(name, dependencies)
                threading.Thread(
                    target=self._build, args=(entry,), daemon=True, name=f"codeexec-start-{name}"
                ).start()
            elif entry.dependencies != dependencies:
                raise SessionExists(
                    f"session {name!r} already runs with dependencies "
                    f"{list(entry.dependencies) or 'none'}; call install_packages to add "
                    f"packages to it, stop_code_executer(name={name!r}) first, or start "
                    "another session with a different name"
                )
            self.current = name
        return entry

    def known(self, name: str) -> SessionEntry | None:
        """The entry for ``name`` if this server tracks it already (no docker call)."""
        with self._lock:
            return self._entries.get(name)

    def get(self, name: str, *, auto_start: bool) -> tuple[SessionEntry, bool]:
        """The entry for ``name`` and whether this call started it.

        Raises:
            NoSuchSession: unknown here and on the engine, and not auto-started.
        """
        with self._lock:
            entry = self._entries.get(name)
        if entry is not None:
            return entry, False
        try:
            session = self._attach(name)
        except NoSuchSession:
            if not auto_start:
                raise NoSuchSession(
                    f"no session named {name!r}: call start_code_executer(name={name!r}) "
                    "first; list_sessions() shows the sessions that exist"
                ) from None
            return self.start(name, ()), True
        return self._adopt(name, session), False

    def reuse(self, name: str) -> SessionEntry:
        """Attach to a running session (left running, or shared) and make it current."""
        with self._lock:
            entry = self._entries.get(name)
        if entry is None or (entry.done.is_set() and entry.session is None):
            try:
                session = self._attach(name)
            except NoSuchSession:
                raise NoSuchSession(
                    f"no running session named {name!r} that this server may use: "
                    "list_sessions() shows the ones it can reach"
                ) from None
            entry = self._adopt(name, session)
        with self._lock:
            self.current = name
        return entry

    def forget(self, entry: SessionEntry, *, remove: bool) -> None:
        """Stop tracking a session; remove its container when ``remove``."""
        self._forget(entry)
        session = entry.session
        if session is None:
            entry.stop_when_built = remove
            return
        if remove:
            session.stop()
        else:
            session.close()

    def rows(self) -> list[SessionRow]:
        """This server's sessions (building ones included) and the engine's others."""
        with self._lock:
            entries = dict(self._entries)
        rows: dict[str, SessionRow] = {}
        for info in self._engine_sessions():
            if not self.reach.reaches(info):
                continue  # out of reach: as if it did not exist
            entry = entries.get(info.name)
            rows[info.name] = SessionRow(
                name=info.name,
                status=info.status,
                container=info.container_name,
                dependencies=list(info.dependencies),
                created=info.created,
                used_here=entry is not None
                and entry.session is not None
                and entry.session.container_id == info.container_id,
            )
        for name, entry in entries.items():
            if name not in rows and not entry.done.is_set():
                rows[name] = SessionRow(
                    name=name,
                    status="building",
                    container="",
                    dependencies=list(entry.dependencies),
                    created="",
                    used_here=True,
                )
        return [rows[name] for name in sorted(rows)]

    def close(self, *, again: bool = False) -> None:
        """Remove every container this server started, at once (unless ``persist``).

        A second call does nothing, unless ``again`` (a signal handler's call, which
        may have cut the first removal short) repeats the removal.
        """
        with self._lock:
            already, self._closed = self._closed, True
            ids = list(self._owned)
        if already:
            if again:
                self.remove_owned(ids)
            return
        self.remove_owned(ids)
        if self.pool_size:
            from .pool import close_shared_pools

            close_shared_pools()  # the unclaimed warm containers; claimed ones went above

    def remove_owned(self, ids: list[str]) -> None:
        """One ``docker rm -f`` of this server's containers."""
        if not ids:
            return
        if self.persist:
            log.info("leaving %d session container(s) running (--persist)", len(ids))
            return
        began = time.monotonic()
        try:
            remove_containers({i: self._owned.get(i, "") for i in ids}, docker=self.docker)
        except CodeexecError as exc:
            log.warning("could not remove session containers %s: %s", ids, exc)
            return
        log.info("removed %d session container(s) in %.2f s", len(ids), time.monotonic() - began)

    # -- internals ------------------------------------------------------------
    def _build(self, entry: SessionEntry) -> None:
        try:
            session, owned = self._start_session(entry)
        except CodeexecError as exc:
            entry.error = exc
        except Exception as exc:  # a bug: keep the server up, tell the model plainly
            log.exception("starting session %r failed", entry.name)
            entry.error = CodeexecError(f"starting session {entry.name!r} failed: {exc!r}")
        else:
            with self._lock:
                discard = entry.stop_when_built or (self._closed and not self.persist)
                if owned and not discard:
                    self._owned[session.container_id] = entry.name
            entry.session = session
            if discard and owned:
                session.stop()
        finally:
            entry.done.set()

    def _start_session(self, entry: SessionEntry) -> tuple[ContainerSession, bool]:
        """Start the entry's session; also say whether this call created its container."""
        if self.reach.shares(entry.name):  # a shared session that runs is used as it is
            try:
                shared = self._attach(entry.name)
            except NoSuchSession:
                pass
            else:
                if shared.info.dependencies != entry.dependencies:
                    shared.close()
                    raise SessionExists(
                        f"session {entry.name!r} already runs with dependencies "
                        f"{list(shared.info.dependencies) or 'none'}; call "
                        "reuse_code_executer to use it as it is"
                    )
                return shared, False
        # start() may attach to a running session of that name: that one is not ours to
        # remove (``created`` says which).
        session = ContainerSession.start(
            entry.name,
            SessionOptions.of(
                self.options, dependencies=entry.dependencies, scope=self.reach.scope
            ),
            on_progress=entry.progress,
            docker=self.docker,
            pool=self.pool_size,
        )
        return session, session.created

    def _engine_sessions(self) -> list[SessionInfo]:
        return list_sessions(docker=self.docker)

    def _scope_names(self) -> set[str]:
        """The running sessions of this scope on the engine (an earlier run's too)."""
        return running_in_scope(self.reach.scope, docker=self.docker)

    def _attach(self, name: str) -> ContainerSession:
        return ContainerSession.attach(
            name,
            docker=self.docker,
            scope=self.reach.attach_scope(name),
            result_limits=self.result_limits,
        )

    def _adopt(self, name: str, session: ContainerSession) -> SessionEntry:
        entry = SessionEntry(name, session.info.dependencies, session=session)
        entry.done.set()
        with self._lock:
            return self._entries.setdefault(name, entry)

    def _forget(self, entry: SessionEntry) -> None:
        with self._lock:
            if self._entries.get(entry.name) is entry:
                del self._entries[entry.name]
                if self.current == entry.name:
                    self.current = self.default_name
            if entry.session is not None and not entry.session.is_fork:
                self._owned.pop(entry.session.container_id, None)
