"""AsyncContainerSession against the real Docker engine (issue 15: an asyncio API)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from codeexec import AsyncContainerSession, ExecResult, StreamEvent
from tests.conftest import unique_name

pytestmark = pytest.mark.docker

DEADLINE = 120.0


def test_two_sessions_overlap_and_a_cancelled_execute_stops_in_the_container(
    tmp_path: Path,
) -> None:
    code = "import time\nt0 = time.time(); time.sleep(2)\n(t0, time.time())"

    async def main() -> list[tuple[float, float]]:
        async with (
            AsyncContainerSession.start(unique_name()) as a,
            AsyncContainerSession.start(unique_name()) as b,
        ):
            spans = await asyncio.gather(a.execute(code), b.execute(code))

            # Cancel a running execution: the loop in the container stops with the task.
            loop = asyncio.get_running_loop()
            printed = asyncio.Event()
            running = "n = 0\nprint('go', flush=True)\nwhile True:\n    n += 1; time.sleep(0.05)"
            task = asyncio.create_task(
                a.execute(running, on_output=lambda *_: loop.call_soon_threadsafe(printed.set))
            )
            await asyncio.wait_for(printed.wait(), DEADLINE)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await a.ping())["busy"] is False
            first = (await a.execute("n")).value
            await asyncio.sleep(0.5)
            assert (await a.execute("n")).value == first  # nothing counts on

            # Cancelled as it starts: the interrupt is resent until the code has stopped,
            # within the executor's grace, so the namespace is kept (no restart).
            task = asyncio.create_task(a.execute("time.sleep(30); finished = True"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await a.execute("'finished' in globals(), n == " + str(first))).value == (
                "(False, True)"
            )

            # Files and streaming through the same session, awaited.
            (tmp_path / "in.txt").write_text("payload")
            assert await a.upload(tmp_path / "in.txt", "") == 7
            events = [e async for e in a.execute_stream("print(open('in.txt').read())")]
            assert "".join(e.text for e in events if isinstance(e, StreamEvent)) == "payload\n"
            assert isinstance(events[-1], ExecResult) and events[-1].ok
            return [eval(r.value or "") for r in spans]

    began = time.monotonic()
    (start_a, end_a), (start_b, end_b) = asyncio.run(main())
    assert max(start_a, start_b) < min(end_a, end_b), "the two executions did not overlap"
    assert time.monotonic() - began < 600
