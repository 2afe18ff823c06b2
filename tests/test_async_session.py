"""AsyncContainerSession without an engine: the fake docker and the real executor, locally.

The same paths against a real engine: tests/integration/test_async.py.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codeexec import AsyncContainerSession, ContainerSession, ExecResult, StreamEvent
from codeexec.async_session import MIRRORED
from tests import fake_engine

DEADLINE = 60.0


def _running(engine: Path) -> set[str]:
    return {r["Id"] for r in fake_engine._records(engine) if fake_engine._alive(r)}


def test_every_public_member_of_container_session_has_an_async_twin() -> None:
    # A member added to ContainerSession without a line in MIRRORED (and on the
    # async class) fails here: see codeexec/async_session.py for the kinds.
    public = {n for n in dir(ContainerSession) if not n.startswith("_")}
    assert public == set(MIRRORED), "mirror the new members in codeexec/async_session.py"
    for name, kind in MIRRORED.items():
        member = inspect.getattr_static(AsyncContainerSession, name)
        if kind == "value":
            assert isinstance(member, property), name
        elif kind in ("make", "static"):
            assert isinstance(member, staticmethod), name
            assert member.__doc__ == getattr(ContainerSession, name).__doc__, name
            if kind == "static":
                assert inspect.iscoroutinefunction(getattr(AsyncContainerSession, name)), name
        else:
            twin = getattr(AsyncContainerSession(object.__new__(ContainerSession)), name)
            if kind == "stream":  # nothing runs before the first item is awaited
                assert isinstance(twin("1"), AsyncIterator), name
            else:
                assert inspect.iscoroutinefunction(twin), name
                assert member.cancel == (kind == "cancel"), name  # cancelling interrupts
                assert member.branch == (kind == "branch"), name  # fork: an async twin back
            assert twin.__doc__ == getattr(ContainerSession, name).__doc__, name


def test_start_execute_stream_files_and_stop(local_engine: Path, tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncContainerSession.start("alpha", idle_timeout=300) as s:
            assert s.created and s.name == "alpha" and s.transport == "tcp"
            assert (await s.execute("x = 41\nx + 1")).value == "42"
            events = [e async for e in s.execute_stream("print('a'); x")]
            text = "".join(e.text for e in events if isinstance(e, StreamEvent))
            assert text == "a\n"
            assert isinstance(events[-1], ExecResult) and events[-1].value == "41"
            local = tmp_path / "up.txt"
            local.write_text("hello")
            assert await s.upload(local, "") == 5
            assert await s.read_file("up.txt") == b"hello"
            assert (await s.download("up.txt", tmp_path / "down.txt")).read_text() == "hello"
            assert (await s.ping())["busy"] is False and await s.is_running()
            assert [i.name for i in await AsyncContainerSession.list_sessions()] == ["alpha"]
            again = await AsyncContainerSession.attach("alpha")
            assert (await again.execute("x")).value == "41"
            await again.close()
        assert _running(local_engine) == set()  # `async with` stopped it

    asyncio.run(main())


async def _wait_for_output(s: AsyncContainerSession, code: str) -> asyncio.Task[ExecResult]:
    """Start ``code`` in a task; return once it has printed (so it runs in the container)."""
    loop = asyncio.get_running_loop()
    printed = asyncio.Event()
    task = asyncio.create_task(
        s.execute(code, on_output=lambda *_: loop.call_soon_threadsafe(printed.set))
    )
    await asyncio.wait_for(printed.wait(), DEADLINE)
    return task


def test_cancelling_execute_interrupts_the_code_and_the_session_goes_on(
    local_engine: Path,
) -> None:
    async def main() -> None:
        s = await AsyncContainerSession.start("beta", idle_timeout=300)
        try:
            await s.execute("import time; steps = 0")
            task = await _wait_for_output(
                s, "print('go', flush=True)\nfor _ in range(600):\n    steps += 1; time.sleep(0.1)"
            )
            began = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - began < 30  # not the minute the loop would take
            # The code stopped when the task did: nothing runs, the count stays put.
            assert (await s.ping())["busy"] is False
            first = (await s.execute("steps")).value
            await asyncio.sleep(0.5)
            assert (await s.execute("steps")).value == first and int(first or 0) < 600
            # Cancelled before the code even reached the container: it still never completes.
            task = asyncio.create_task(s.execute("time.sleep(30); finished = True"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await s.execute("'finished' in globals()")).value == "False"
            # A deadline from asyncio is a cancellation too.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(s.execute("time.sleep(30); late = True"), 0.5)
            assert (await s.execute("'late' in globals()")).value == "False"
        finally:
            await s.stop()

    asyncio.run(main())


def test_leaving_a_stream_early_interrupts_the_code(local_engine: Path) -> None:
    async def main() -> None:
        async with AsyncContainerSession.start("gamma", idle_timeout=300) as s:
            code = "import time\nprint('first', flush=True)\ntime.sleep(60)\nafter = 1"
            began = time.monotonic()
            async for event in s.execute_stream(code):
                assert isinstance(event, StreamEvent)
                break
            assert time.monotonic() - began < 30
            assert (await s.execute("'after' in globals()")).value == "False"

            # A task reading the stream, cancelled while it waits for the next event.
            first = asyncio.Event()

            async def read() -> None:
                async for _ in s.execute_stream(code):
                    first.set()

            task = asyncio.create_task(read())
            await asyncio.wait_for(first.wait(), DEADLINE)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await s.execute("'after' in globals()")).value == "False"

    asyncio.run(main())


def test_two_sessions_run_at_once_in_one_loop(local_engine: Path) -> None:
    code = "import time\nt0 = time.time(); time.sleep(1.5)\n(t0, time.time())"

    async def main() -> list[tuple[float, float]]:
        a, b = await asyncio.gather(
            AsyncContainerSession.start("one", idle_timeout=300),
            AsyncContainerSession.start("two", idle_timeout=300),
        )
        try:
            results = await asyncio.gather(a.execute(code), b.execute(code))
        finally:
            await asyncio.gather(a.stop(), b.stop())
        return [eval(r.value or "") for r in results]

    (start_a, end_a), (start_b, end_b) = asyncio.run(main())
    assert max(start_a, start_b) < min(end_a, end_b)  # both were running at one moment


def test_a_cancelled_start_leaves_no_container(local_engine: Path) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(AsyncContainerSession.start("delta", idle_timeout=300))
        await asyncio.sleep(0.05)  # the start is under way in its thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _running(local_engine) == set()
