"""Forks of a session inside its container (docs/snapshots.md, Tier 1, "fork").

A fork is a second runner (its own worker, execution and checkpoints) in the same
supervisor, started from a parked copy of the source's worker: the whole
interpreter, copied by fork() in milliseconds. A connection picks its branch with
the ``branch`` op after the handshake (none: the session's own runner). The
source keeps running and keeps its connections; stopping a fork ends its worker;
the container (and so every fork) ends with the source session.

``Branches`` stands in for the one runner the server loop knows: events, timers,
reaping and detaching go to every branch; ``worker`` is the main one's.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from .checkpoints import NAME, CheckpointError

if TYPE_CHECKING:
    from .runner import Runner

MAX_FORKS = int(os.environ.get("CODEEXEC_MAX_FORKS", "8") or 8)


class Branches:
    def __init__(self, make_runner) -> None:
        # Children that are no branch's worker (commands.py's) go to on_reaped.
        self.on_reaped = lambda pid, status: False

        def make() -> Runner:
            runner: Runner = make_runner()
            runner.on_reaped = self._dispatch  # whichever runner reaps, the owner hears
            return runner

        self.make_runner = make
        self.main: Runner = make()
        self.forks: dict[str, Runner] = {}
        self._all: tuple[Runner, ...] = (self.main,)  # main, then forks; made anew on a change

    def all(self) -> tuple[Runner, ...]:
        return self._all

    def _forks_changed(self) -> None:
        self._all = (self.main, *self.forks.values())

    def get(self, name: str) -> Runner | None:
        return self.main if not name else self.forks.get(name)

    # -- what the server loop uses of a runner ------------------------------------

    @property
    def grace(self) -> float:
        return float(self.main.grace)

    @property
    def worker(self):
        return self.main.worker

    @property
    def exec(self):
        if not self.forks:  # every request of a session without forks asks this
            return self.main.exec
        return next((r.exec for r in self._all if r.exec is not None), None)

    @property
    def last_done(self) -> float:
        return max(r.last_done for r in self.all())

    @property
    def checkpoints(self) -> Branches:
        return self  # the server's ``runner.checkpoints.close()`` at exit

    def close(self) -> None:
        for runner in self.all():
            runner.checkpoints.close()
        for runner in self.forks.values():
            if runner.worker is not None:
                runner.worker.kill()

    def start_worker(self) -> bool:
        return bool(self.main.start_worker())

    def on_event(self, kind: str, obj) -> None:
        for runner in self.all():
            runner.on_event(kind, obj)

    def deadlines(self) -> list:
        return [d for r in self.all() for d in r.deadlines()]

    def tick(self, now: float) -> None:
        for runner in self._all:  # a tuple, replaced (never changed) as forks come and go
            runner.tick(now)

    def detach(self, conn) -> None:
        for runner in self.all():
            runner.detach(conn)

    def reap(self) -> None:
        """Reap every child once (the main runner's loop; others go to _dispatch)."""
        self.main.reap()

    def _dispatch(self, pid: int, status: int) -> bool:
        """A child some runner reaped that was not its own worker: tell the branch
        whose worker it was, else ``on_reaped`` (commands.py)."""
        for runner in self.all():
            if runner.worker is not None and runner.worker.pid == pid:
                runner.worker.set_status(status)
                runner._worker_lost()
                return True
        return bool(self.on_reaped(pid, status))

    # -- forks ----------------------------------------------------------------------

    def fork(self, source, name) -> dict:
        if not isinstance(name, str) or not NAME.match(name):
            raise CheckpointError("bad_request", "a fork's name is 1-64 letters, digits, _.-")
        if name in self.forks:
            raise CheckpointError("fork_exists", f"this session already has a fork {name!r}")
        if len(self.forks) >= MAX_FORKS:
            raise CheckpointError(
                "fork_limit", f"this session has {MAX_FORKS} forks, the most it may; stop one"
            )
        start = time.monotonic()
        parked = source.checkpoints.park(f"(fork {name})")
        runner = self.make_runner()
        try:
            runner.checkpoints.wake(parked)  # the fork's worker: a copy of the parked one
        except CheckpointError:
            runner.kill_worker()
            raise
        finally:
            parked.close()  # the parked copy exits; the woken worker goes on
        self.forks[name] = runner
        self._forks_changed()
        worker = runner.worker
        return {
            "name": name,
            "worker_pid": None if worker is None else worker.pid,
            "duration_ms": round((time.monotonic() - start) * 1000, 3),
        }

    def close_fork(self, name: str) -> None:
        runner = self.forks.pop(name, None)
        if runner is None:
            raise CheckpointError("no_such_fork", f"this session has no fork {name!r}")
        self._forks_changed()
        if runner.exec is not None:
            runner.interrupt("disconnected")
        runner.checkpoints.close()
        runner.kill_worker()
        if runner.exec is not None:
            runner._finish("interrupted", None, {"ename": "ForkStopped",
                           "evalue": "the fork was stopped", "traceback": []})  # fmt: skip
