"""What each request does, once the supervisor has decoded it (docs/protocol.md).

A mixin of ``Server`` (server.py), which owns the loop, the connections and the
timers: the handshake (``hello``, then ``auth``), then ``exec``, ``interrupt``,
``ping``, ``reset``, ``put_file`` and ``get_file`` (files.py), ``list_files``,
``remove_file`` and ``make_dir`` (fileops.py), ``run`` (commands.py), ``input_reply``
(notebook.py), and the checkpoint ops ``checkpoint``, ``restore``, ``drop`` and
``checkpoints``.
"""

from __future__ import annotations

import os
import platform
import time
from typing import TYPE_CHECKING

from . import __version__, bounds, fileops, files, handshake, notebook
from .checkpoints import CheckpointError

if TYPE_CHECKING:
    from .branches import Branches
    from .commands import Commands
    from .runner import Runner
    from .server import Conn

PROTOCOL = handshake.PROTOCOL


class Ops:
    """The ``_op_<name>`` handlers, found by ``_dispatch`` from a frame's ``op``."""

    token: bytes
    frame_limit: int
    runner: Branches
    commands: Commands

    if TYPE_CHECKING:

        def send(self, conn: Conn | None, obj: dict) -> None: ...

        def _fail(self, conn: Conn, code: str, message: str, req_id=None) -> None: ...

        def _error(self, conn: Conn, code: str, message: str, req_id=None) -> None: ...

        def _last_activity(self) -> float: ...

    def _dispatch(self, conn: Conn, req: dict) -> None:
        op = req.get("op")
        req_id = req.get("id")
        if not conn.authed and op not in ("hello", "auth"):
            self._fail(
                conn, "unauthorized", "the handshake (hello, then auth) must come first", req_id
            )
            return
        if not isinstance(op, str):
            self._error(conn, "bad_request", "the frame has no string 'op'", req_id)
            return
        handler = getattr(self, "_op_" + op, None)
        if handler is None:
            self._error(conn, "unknown_op", f"unknown op {op[:100]!r}", req_id)
            return
        if conn.branch and self.runner.get(conn.branch) is None and op not in ("hello", "auth"):
            self._error(conn, "no_such_fork", f"the fork {conn.branch!r} was stopped", req_id)
            return
        handler(conn, req)

    def _runner(self, conn: Conn) -> Runner:
        runner = self.runner.get(conn.branch)
        assert runner is not None  # _dispatch checked it
        return runner

    def _op_hello(self, conn: Conn, req: dict) -> None:
        """Answer a client's nonce with ours and proof that we know the token."""
        if conn.authed:
            self._error(conn, "bad_request", "this connection is authenticated already")
            return
        if conn.nonces is not None:
            self._fail(conn, "unauthorized", "one hello per connection")
            return
        if req.get("protocol") != PROTOCOL:
            # A version-1 hello carries the raw token: refused, and never compared.
            self._fail(
                conn,
                "protocol_mismatch",
                f"this executor speaks protocol {PROTOCOL}; use the same codeexec version "
                "on the host as the one that started the session",
            )
            return
        client_nonce = handshake.unb64(req.get("nonce"), handshake.NONCE_BYTES)
        if client_nonce is None:
            self._fail(
                conn,
                "bad_request",
                f"'nonce' must be {handshake.NONCE_BYTES} random bytes in base64",
            )
            return
        server_nonce = handshake.new_nonce()
        conn.nonces = client_nonce + server_nonce
        proof = handshake.proof(self.token, handshake.SERVER_LABEL, conn.nonces)
        self.send(
            conn,
            {
                "type": "challenge",
                "protocol": PROTOCOL,
                "nonce": handshake.b64(server_nonce),
                "proof": handshake.b64(proof),
            },
        )

    def _op_auth(self, conn: Conn, req: dict) -> None:
        """Check the client's proof; only then is the connection authenticated."""
        if conn.authed:
            self._error(conn, "bad_request", "this connection is authenticated already")
            return
        if conn.nonces is None:
            self._fail(conn, "unauthorized", "the handshake starts with a hello")
            return
        nonces, conn.nonces = conn.nonces, None
        if not handshake.proof_ok(self.token, handshake.CLIENT_LABEL, nonces, req.get("proof")):
            self._fail(conn, "unauthorized", "wrong proof: the token does not match")
            return
        conn.authed = True
        conn.decoder.limit = self.frame_limit
        self.send(
            conn,
            {
                "type": "hello",
                "protocol": PROTOCOL,
                "python": platform.python_version(),
                "executor": __version__,
                "pid": os.getpid(),
                "worker_pid": getattr(self.runner.worker, "pid", None),
                "busy": self.runner.main.exec is not None,
                "idle_seconds": self._idle_seconds(),
            },
        )

    def _op_ping(self, conn: Conn, req: dict) -> None:
        self.send(
            conn,
            {
                "type": "pong",
                "busy": self._runner(conn).exec is not None,
                "idle_seconds": self._idle_seconds(),
            },
        )

    def _idle_seconds(self) -> float:
        if self.runner.exec is not None:
            return 0.0
        return round(max(0.0, time.monotonic() - self._last_activity()), 1)

    def _op_exec(self, conn: Conn, req: dict) -> None:
        req_id, code = req.get("id"), req.get("code")
        timeout = req.get("timeout")
        limits = {k: req[k] for k in bounds.LIMIT_KEYS if req.get(k) is not None}
        runner = self._runner(conn)
        if runner.exec is not None:
            self._error(conn, "busy", "another execution is running", req_id)
            return
        problem = None
        if not isinstance(req_id, (str, int)) or isinstance(req_id, bool):
            problem = "'id' must be a string"
        elif not isinstance(code, str):
            problem = "'code' must be a string"
        elif timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            problem = "'timeout' must be a number of seconds >= 0 or null"
        for key, limit in sorted(limits.items()):
            if problem is None and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
            ):
                problem = f"'{key}' must be an integer >= 0 or null"
        env = req.get("env")
        if env is not None:  # set in the worker for this execution only
            if not isinstance(env, dict) or not all(_env_item(k, v) for k, v in env.items()):
                problem = problem or "'env' must map variable names to strings"
            limits["env"] = env
        if problem:
            self._error(conn, "bad_request", problem, req_id)
            return
        assert isinstance(code, str)  # checked above
        # Notebook flags (docs/protocol.md): whether the client answers input(), and
        # whether the cell counts (execution_count, `_`).
        flags = {
            k: v for k in ("allow_stdin", "store_history") if isinstance(v := req.get(k), bool)
        }
        rollback = req.get("rollback") is True
        runner.begin(conn, req_id, code, timeout, limits, flags, rollback=rollback)

    def _op_interrupt(self, conn: Conn, req: dict) -> None:
        ex = self._runner(conn).exec
        req_id = req.get("id")
        running = req_id is not None and self.commands.interrupt(conn, req_id)
        if not running and ex is not None and (req_id is None or req_id == ex.id):
            running = True
            self._runner(conn).interrupt("interrupted")
        self.send(conn, {"type": "ack", "op": "interrupt", "id": req_id, "running": running})

    def _op_run(self, conn: Conn, req: dict) -> None:
        refused = self.commands.begin(conn, req)
        if refused is not None:
            self.send(conn, refused)

    def _op_input_reply(self, conn: Conn, req: dict) -> None:
        """The client's answer to the running execution's input()."""
        runner = self._runner(conn)
        problem = notebook.reply_input(runner.exec, runner.worker, conn, req)
        if problem is not None:
            self._error(conn, "bad_request", problem, req.get("id"))

    def _op_reset(self, conn: Conn, req: dict) -> None:
        self._runner(conn).reset()
        self.send(conn, {"type": "ack", "op": "reset"})

    def _op_put_file(self, conn: Conn, req: dict) -> None:
        self.send(conn, files.put_file(req))

    def _op_get_file(self, conn: Conn, req: dict) -> None:
        default = self.frame_limit * 3 // 4 - 64 * 1024
        self.send(conn, files.get_file(req, default))

    # -- checkpoints (checkpoints.py) ------------------------------------------

    def _checkpoint_op(self, conn: Conn, req: dict, action) -> None:
        runner = self._runner(conn)
        if runner.exec is not None:
            self._error(conn, "busy", "an execution is running; checkpoints wait for it")
            return
        try:
            answer = action(runner.checkpoints)
        except CheckpointError as exc:
            self._error(conn, exc.code, str(exc))
            return
        self.send(conn, dict(answer, type="checkpoint", op=req.get("op")))

    def _op_checkpoint(self, conn: Conn, req: dict) -> None:
        """Park a copy of the worker under a name (and a tar of the files, if asked)."""
        self._checkpoint_op(
            conn, req, lambda c: c.create(req.get("name"), req.get("files") is True)
        )

    def _op_restore(self, conn: Conn, req: dict) -> None:
        self._checkpoint_op(conn, req, lambda c: c.restore(req.get("name")))

    def _op_drop(self, conn: Conn, req: dict) -> None:
        name = req.get("name")
        self._checkpoint_op(conn, req, lambda c: c.drop(name) or {"name": name})

    def _op_checkpoints(self, conn: Conn, req: dict) -> None:
        self._checkpoint_op(conn, req, lambda c: {"checkpoints": c.list()})

    # -- forks (branches.py) -----------------------------------------------------

    def _op_fork(self, conn: Conn, req: dict) -> None:
        """A new branch, started from a copy of this connection's branch."""
        source = self._runner(conn)
        self._checkpoint_op(conn, req, lambda _c: self.runner.fork(source, req.get("name")))

    def _op_branch(self, conn: Conn, req: dict) -> None:
        """Talk to a fork from now on (its name), or to the session itself ("")."""
        name = req.get("name") or ""
        if not isinstance(name, str) or self.runner.get(name) is None:
            self._error(conn, "no_such_fork", f"this session has no fork {name!r}")
            return
        conn.branch = name
        self.send(conn, {"type": "ack", "op": "branch", "name": name})

    def _op_close_fork(self, conn: Conn, req: dict) -> None:
        name = req.get("name")
        try:
            self.runner.close_fork(name)  # type: ignore[arg-type]
        except CheckpointError as exc:
            self._error(conn, exc.code, str(exc))
            return
        self.send(conn, {"type": "ack", "op": "close_fork", "name": name})

    def _op_forks(self, conn: Conn, req: dict) -> None:
        self.send(conn, {"type": "ack", "op": "forks", "forks": sorted(self.runner.forks)})

    # -- files (fileops.py) -----------------------------------------------------

    def _op_list_files(self, conn: Conn, req: dict) -> None:
        self.send(conn, fileops.list_files(req))

    def _op_remove_file(self, conn: Conn, req: dict) -> None:
        self.send(conn, fileops.remove_file(req))

    def _op_make_dir(self, conn: Conn, req: dict) -> None:
        self.send(conn, fileops.make_dir(req))


def _env_item(name, value) -> bool:
    """One environment variable as os.environ takes it (no '=' in the name, no NUL)."""
    if not isinstance(name, str) or not isinstance(value, str):
        return False
    return bool(name) and "=" not in name and "\0" not in name + value
