"""AsyncContainerSession: ContainerSession's methods, awaitable, for asyncio programs.

Each method runs its ``ContainerSession`` twin in a worker thread (the session's
sockets and the docker CLI block), so an event loop keeps serving other tasks and
other sessions while code runs. Nothing is reimplemented: the table ``MIRRORED``
names every public member of ``ContainerSession`` and how it is mirrored, and
tests/test_async_session.py fails when the sync class gains one the table lacks.

Cancelling a task that awaits ``execute`` (or ``install``, or an ``execute_stream``
step) interrupts the code in the container, waits until the executor has answered,
then raises ``CancelledError``: the code does not run on, and the session stays
usable. Other calls cannot be stopped half-way; a cancelled one finishes in its
thread first, and a cancelled ``start`` removes the container it made.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, cast, overload

from .models import SessionInfo, Transport
from .session import ContainerSession

_P = ParamSpec("_P")
_R = TypeVar("_R")
_Y = TypeVar("_Y")

# Threads for blocking calls, separate from the loop's default executor (about six
# threads on a small machine): each running execution holds one for its duration.
_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="codeexec-async")
# Seconds between interrupts of a cancelled call still running. The executor drops
# an interrupt that lands before the code starts (and restarts the worker, losing
# the namespace, if the code still runs a grace period later): resend it soon.
INTERRUPT_RETRY = 0.1
_DONE = object()

# How each public member of ContainerSession is mirrored (kept in sync by a test):
# "call"   an awaitable method running the sync one in a thread;
# "cancel" the same, and cancelling it interrupts the code in the container;
# "stream" an async iterator over the sync generator, interrupted on cancel;
# "make"   a static method returning an AsyncContainerSession (awaitable or `async with`);
# "static" a static method awaited in a thread;
# "value"  a read-only property read from the sync session (no I/O);
# "branch" an awaitable method whose new ContainerSession comes back wrapped (fork).
Kind = Literal["call", "cancel", "stream", "make", "static", "value", "branch"]
MIRRORED: dict[str, Kind] = {
    "attach": "make",
    "checkpoint": "call",
    "checkpoints": "call",
    "close": "call",
    "download": "call",
    "drop": "call",
    "execute": "cancel",
    "execute_stream": "stream",
    "fork": "branch",
    "idle_seconds": "call",
    "install": "cancel",
    "interrupt": "call",
    "is_fork": "value",
    "is_running": "call",
    "list_sessions": "static",
    "logs": "call",
    "ping": "call",
    "read_file": "call",
    "reset": "call",
    "restore": "call",
    "resume": "make",
    "route": "value",
    "snapshot": "call",
    "start": "make",
    "stop": "call",
    "upload": "call",
    "write_file": "call",
}


async def in_thread(call: Callable[[], _R], *, interrupt: Callable[[], None] | None = None) -> _R:
    """Await ``call()`` run in a worker thread.

    On cancellation the thread is never left running on its own: ``interrupt`` (if
    given) is sent, and repeated while the call runs, until the call returns; then
    the cancellation goes on. A second cancellation while waiting changes nothing.
    """
    running = _THREADS.submit(call)
    future = asyncio.wrap_future(running)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        settle = asyncio.ensure_future(_settle(running, future, interrupt))
        while not settle.done():
            try:
                await asyncio.shield(settle)
            except asyncio.CancelledError:
                continue
        raise


async def _settle(
    running: Future[Any], future: asyncio.Future[Any], interrupt: Callable[[], None] | None
) -> None:
    loop = asyncio.get_running_loop()
    while not future.done():
        if interrupt is not None:
            try:  # not once the call is over: the next execution is not ours to stop
                await loop.run_in_executor(_THREADS, _unless_done, running, interrupt)
            except Exception:  # the call's own outcome is what counts
                pass
        await asyncio.wait({future}, timeout=INTERRUPT_RETRY)
    if not future.cancelled():
        future.exception()  # retrieved: the caller was cancelled, the outcome is moot


def _unless_done(running: Future[Any], interrupt: Callable[[], None]) -> None:
    if not running.done():
        interrupt()


class _Call(Generic[_P, _R]):
    """An async twin of a ``ContainerSession`` method (a descriptor on the async class)."""

    def __init__(
        self,
        method: Callable[Concatenate[ContainerSession, _P], _R],
        *,
        cancel: bool = False,
        branch: bool = False,
    ) -> None:
        self.method = method
        self.cancel = cancel
        self.branch = branch  # the result is a new ContainerSession: hand back its twin
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Call[_P, _R]: ...
    @overload
    def __get__(
        self, obj: AsyncContainerSession, owner: type | None = None
    ) -> Callable[_P, Coroutine[Any, Any, _R]]: ...
    def __get__(
        self, obj: AsyncContainerSession | None, owner: type | None = None
    ) -> _Call[_P, _R] | Callable[_P, Coroutine[Any, Any, _R]]:
        if obj is None:
            return self
        sync, method, branch = obj.sync, self.method, self.branch
        stop = sync.interrupt if self.cancel else None

        @functools.wraps(method)
        async def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            await obj._settled()
            done = await in_thread(functools.partial(method, sync, *args, **kwargs), interrupt=stop)
            return cast(_R, AsyncContainerSession(cast(Any, done))) if branch else done

        return call


class _Stream(Generic[_P, _Y]):
    """An async twin of a ``ContainerSession`` generator: ``async for`` over its items."""

    def __init__(self, method: Callable[Concatenate[ContainerSession, _P], Iterator[_Y]]) -> None:
        self.method = method
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Stream[_P, _Y]: ...
    @overload
    def __get__(
        self, obj: AsyncContainerSession, owner: type | None = None
    ) -> Callable[_P, AsyncIterator[_Y]]: ...
    def __get__(
        self, obj: AsyncContainerSession | None, owner: type | None = None
    ) -> _Stream[_P, _Y] | Callable[_P, AsyncIterator[_Y]]:
        if obj is None:
            return self
        sync, method = obj.sync, self.method

        @functools.wraps(method)
        def stream(*args: _P.args, **kwargs: _P.kwargs) -> AsyncIterator[_Y]:
            return _Items(obj, lambda: method(sync, *args, **kwargs))

        return stream


class _Items(AsyncIterator[_Y]):
    """The items of a sync generator, each fetched in a worker thread.

    Left early (``break``, an exception, ``aclose()``), the generator is closed,
    which interrupts the code and drains its output; the session's next call waits
    for that, so it never meets its own abandoned execution as ``SessionBusy``.
    """

    def __init__(self, session: AsyncContainerSession, make: Callable[[], Iterator[_Y]]) -> None:
        self._session = session
        self._make = make
        self._items: Iterator[_Y] | None = None
        self._done = False

    async def __anext__(self) -> _Y:
        if self._done:
            raise StopAsyncIteration
        if self._items is None:
            await self._session._settled()
            self._items = self._make()
        try:
            item = await in_thread(
                functools.partial(next, self._items, _DONE), interrupt=self._session.sync.interrupt
            )
        except BaseException:
            await self.aclose()
            raise
        if item is _DONE:
            self._done = True
            raise StopAsyncIteration
        return cast(_Y, item)

    async def aclose(self) -> None:
        """Stop early: interrupt the code and wait until its output is drained."""
        closing = self._close()
        if closing is not None:
            await asyncio.wrap_future(closing)

    def _close(self) -> Future[None] | None:
        items, self._items, self._done = self._items, None, True
        close = getattr(items, "close", None)
        return None if close is None else self._session._closing(close)

    def __del__(self) -> None:  # a `break` out of `async for` drops the iterator here
        if not self._done:
            try:
                self._close()
            except RuntimeError:  # the interpreter is shutting down: no threads to close in
                pass


class _Starting(Awaitable["AsyncContainerSession"]):
    """What ``start``/``attach`` return: await it, or use it in ``async with``."""

    def __init__(self, make: Callable[[], ContainerSession]) -> None:
        self._make = make
        self._session: AsyncContainerSession | None = None

    def __await__(self) -> Generator[Any, None, AsyncContainerSession]:
        return self._open().__await__()

    async def _open(self) -> AsyncContainerSession:
        made: list[ContainerSession] = []

        def make() -> ContainerSession:
            made.append(self._make())
            return made[0]

        try:
            return AsyncContainerSession(await in_thread(make))
        except asyncio.CancelledError:
            if made:  # started after all: leave nothing behind that the caller never saw
                await in_thread(made[0].stop if made[0].created else made[0].close)
            raise

    async def __aenter__(self) -> AsyncContainerSession:
        self._session = await self._open()
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.stop()


def _making(make: Callable[_P, ContainerSession]) -> Callable[_P, _Starting]:
    """``start``/``attach``: the same arguments, an awaitable (or ``async with``) result."""

    @functools.wraps(make)
    def making(*args: _P.args, **kwargs: _P.kwargs) -> _Starting:
        return _Starting(functools.partial(make, *args, **kwargs))

    return making


def _blocking(call: Callable[_P, _R]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """A blocking function as a coroutine function (run in a worker thread)."""

    @functools.wraps(call)
    async def blocking(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await in_thread(functools.partial(call, *args, **kwargs))

    return blocking


class AsyncContainerSession:
    """A ``ContainerSession`` for asyncio: the same methods, awaited.

    ``s = await AsyncContainerSession.start(...)`` (or ``async with
    AsyncContainerSession.start(...) as s:``, which stops it on exit), then
    ``await s.execute(code)``, ``async for event in s.execute_stream(code)``,
    ``await s.upload(...)``, ``await s.stop()``. Arguments and results are those of
    ``ContainerSession`` (docs/python-api.md). ``sync`` is the wrapped session;
    calling its blocking methods from a coroutine would stall the event loop.
    """

    def __init__(self, sync: ContainerSession) -> None:
        self.sync = sync
        self._pending: set[Future[None]] = set()

    def _closing(self, close: Callable[[], None]) -> Future[None]:
        """Run ``close`` (an abandoned stream's) in a thread; later calls wait for it."""
        future = _THREADS.submit(close)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    async def _settled(self) -> None:
        for future in list(self._pending):
            await asyncio.wrap_future(future)

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    # Awaited, or in `async with` (which stops the session on exit). A cancelled start
    # removes the container it made.
    start = staticmethod(_making(ContainerSession.start))
    attach = staticmethod(_making(ContainerSession.attach))
    list_sessions = staticmethod(_blocking(ContainerSession.list_sessions))
    resume = staticmethod(_making(ContainerSession.resume))

    # Attributes of the session (no I/O).
    @property
    def name(self) -> str:
        return self.sync.name

    @property
    def info(self) -> SessionInfo:
        return self.sync.info

    @property
    def container_id(self) -> str:
        return self.sync.container_id

    @property
    def created(self) -> bool:
        return self.sync.created

    @property
    def transport(self) -> Transport:
        return self.sync.transport

    @property
    def route(self) -> str:
        return self.sync.route

    @property
    def resume_failures(self) -> dict[str, str]:
        return self.sync.resume_failures

    @property
    def is_fork(self) -> bool:
        return self.sync.is_fork

    async def __aenter__(self) -> AsyncContainerSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # The mirrored methods, one line each (MIRRORED says which kind each is).
    execute = _Call(ContainerSession.execute, cancel=True)
    execute_stream = _Stream(ContainerSession.execute_stream)
    install = _Call(ContainerSession.install, cancel=True)
    interrupt = _Call(ContainerSession.interrupt)
    reset = _Call(ContainerSession.reset)
    ping = _Call(ContainerSession.ping)
    idle_seconds = _Call(ContainerSession.idle_seconds)
    write_file = _Call(ContainerSession.write_file)
    read_file = _Call(ContainerSession.read_file)
    upload = _Call(ContainerSession.upload)
    download = _Call(ContainerSession.download)
    is_running = _Call(ContainerSession.is_running)
    logs = _Call(ContainerSession.logs)
    close = _Call(ContainerSession.close)
    stop = _Call(ContainerSession.stop)
    snapshot = _Call(ContainerSession.snapshot)
    checkpoint = _Call(ContainerSession.checkpoint)
    restore = _Call(ContainerSession.restore)
    checkpoints = _Call(ContainerSession.checkpoints)
    drop = _Call(ContainerSession.drop)
    fork = _Call(ContainerSession.fork, branch=True)  # -> AsyncContainerSession
