"""Jobs: code that runs longer than a client waits for one call, by id.

The MCP SDK installed here (2.x) serves no MCP tasks (the task-augmented calls of
protocol 2025-11-25 left its core for an extension), so long runs follow an
explicit pattern instead: ``start_job`` answers at once with a job id (or with the
result, if the code ended within a moment), ``get_job(job, wait)`` answers with the
output so far or the result, waiting up to ``wait`` seconds with progress
notifications, and ``cancel_job`` interrupts the code (its variables are kept). A
job holds its session like any execution: other calls on that session are
refused, naming the job, until it ends. Jobs belong to the MCP session (the
client) that started them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import Field
from typing_extensions import TypedDict

from ._mcp_access import SETTLE_WAIT, WORKERS, Progress, SessionAccess, Use, access, watch
from ._mcp_support import (
    ExecOutput,
    ToolSet,
    check_code_size,
    exec_output,
    exec_result,
    structured,
)
from .models import ExecResult

MAX_JOB_TIMEOUT = 24 * 3600.0
MAX_POLL_WAIT = 50.0  # under the ~60 s clients wait for one call
KEEP_FINISHED = 50  # finished jobs remembered per client
FIRST_LOOK = 0.5  # seconds start_job waits: short code answers with its result


class JobOutput(TypedDict):
    """A job's state; ``result`` once it has ended."""

    job: str
    session: str
    state: Literal["running", "done", "failed"]
    seconds: float
    output_tail: str
    result: ExecOutput | None
    failure: str | None


@dataclass
class Job:
    id: str
    use: Use
    future: Future[ExecResult] = field(default_factory=Future)
    began: float = field(default_factory=time.monotonic)
    ended: float | None = None
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=200))

    def collect(self, _stream: str, text: str) -> None:
        self.recent.append(text)

    def tail(self) -> str:
        return "".join(self.recent)[-2000:]


def start(access: SessionAccess, use: Use, code: str, timeout: float) -> Job:
    access.check_idle(use)
    finished = [j for j in access.jobs.values() if j.future.done()]
    for old in finished[: max(0, len(finished) - KEEP_FINISHED + 1)]:
        del access.jobs[old.id]
    job = Job(f"job-{secrets.token_hex(3)}", use)

    def run() -> ExecResult:
        try:
            return use.session.execute(
                code,
                timeout=timeout,
                result_limits=access.registry.result_limits,
                on_output=job.collect,
            )
        finally:
            job.ended = time.monotonic()

    job.future = WORKERS.submit(run)
    access.jobs[job.id] = job
    return job


def report(job: Job) -> CallToolResult:
    """The job's state for the model: a summary, images, and the structured JSON."""
    seconds = (job.ended or time.monotonic()) - job.began
    out = JobOutput(
        job=job.id,
        session=job.use.name,
        state="running",
        seconds=round(seconds, 3),
        output_tail=job.tail(),
        result=None,
        failure=None,
    )
    if not job.future.done():
        tail = out["output_tail"].rstrip("\n")[-1000:]
        summary = (
            f"job {job.id!r} is running in session {job.use.name!r} ({seconds:.0f} s so far). "
            f"Call get_job(job={job.id!r}, wait=50) for its result, cancel_job to stop it."
        )
        return structured(summary + (f"\n\nlatest output:\n{tail}" if tail else ""), dict(out))
    error = job.future.exception()
    if error is not None:
        out["state"], out["failure"] = "failed", str(error)
        return structured(f"job {job.id!r} failed: {error}", dict(out))
    result = job.future.result()
    out["state"], out["result"] = "done", exec_output(result, job.use.name, False)
    shown = exec_result(result, name=job.use.name, max_timeout=MAX_JOB_TIMEOUT)
    summary = f"job {job.id!r} ended after {seconds:.0f} s.\n\n" + str(shown.content[0].text)  # type: ignore[union-attr]
    return structured(summary, dict(out), images=shown.content[1:-1])


def find(access: SessionAccess, job: str) -> Job:
    found = access.jobs.get(job)
    if found is None:
        known = ", ".join(access.jobs) or "none"
        raise ToolError(f"no job {job!r} here (this client's jobs: {known}); start_job starts one")
    return found


async def settle(ctx: Context, job: Job, wait: float) -> None:
    """Wait up to ``wait`` s for the job to end, with progress notifications."""
    if job.future.done() or wait <= 0:
        return
    try:
        await watch(
            asyncio.wrap_future(job.future),
            Progress(ctx),
            label=f"job {job.id}",
            latest=lambda: job.recent[-1] if job.recent else "",
            began=job.began,
            until=time.monotonic() + wait,
        )
    except asyncio.TimeoutError:
        pass
    except Exception:  # noqa: BLE001 - the report says how the job failed
        pass


JobId = Annotated[str, Field(description="The id start_job returned.")]


JOB_TOOLS = ToolSet()


@JOB_TOOLS.tool("Start a long run", structured=True, destructive=True, open_world=True)
async def start_job(
    ctx: Context,
    code: Annotated[str, Field(description="Python source, as for execute_code.")],
    name: Annotated[
        str | None, Field(description="Session name; omit it for the current session.")
    ] = None,
    timeout: Annotated[
        float,
        Field(
            gt=0,
            le=MAX_JOB_TIMEOUT,
            description="Seconds before the code is interrupted; variables are kept.",
        ),
    ] = 3600.0,
) -> Annotated[CallToolResult, JobOutput]:
    """Start code that may run longer than one call may wait (minutes or hours) and
    return its job id at once; code that ends within half a second returns its result
    straight away. Then call get_job(job, wait=50) until its state is 'done', or
    cancel_job(job). The session stays busy until the job ends; its state persists."""
    check_code_size(code)
    sessions = access(ctx)
    use = await sessions.use(ctx, name)
    job = start(sessions, use, code, timeout)
    await settle(ctx, job, FIRST_LOOK)
    return report(job)


@JOB_TOOLS.tool("Check a long run", structured=True, read_only=True)
async def get_job(
    ctx: Context,
    job: JobId,
    wait: Annotated[
        float,
        Field(
            ge=0,
            le=MAX_POLL_WAIT,
            description="Seconds to wait for the job to end before answering (0: at once).",
        ),
    ] = 0.0,
) -> Annotated[CallToolResult, JobOutput]:
    """The state of a job started with start_job: 'running' with its latest output,
    or 'done' with the result (as execute_code returns it), or 'failed' with why."""
    found = find(access(ctx), job)
    await settle(ctx, found, wait)
    return report(found)


@JOB_TOOLS.tool("Stop a long run", structured=True, destructive=True, idempotent=True)
async def cancel_job(ctx: Context, job: JobId) -> Annotated[CallToolResult, JobOutput]:
    """Interrupt a running job (KeyboardInterrupt in its code; the session and the
    variables it set are kept) and return its final state."""
    found = find(access(ctx), job)
    if not found.future.done():
        found.use.session.interrupt()
        await settle(ctx, found, SETTLE_WAIT)
    return report(found)
