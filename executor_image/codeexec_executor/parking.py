"""The worker's side of checkpoints (docs/snapshots.md, Tier 1): fork a parked copy.

A checkpoint is a copy of the whole worker process made with fork(): every
object, module and computation state, sharing its memory pages with the worker
(copy-on-write) until either side writes. The supervisor asks over the worker's
park socket (a Unix socket pair, fd 4 of CODEEXEC_CTRL_FDS), handing over one end
of a fresh socket pair with SCM_RIGHTS. The worker forks twice (the middle
process exits at once) so the copy is an orphan, reaped by the supervisor (PID 1,
or a child subreaper), and never the worker's child. The copy is put in a process
group of its own before its pid is known, so killing the worker's group never
catches it, and then waits on its socket:

- a wake message carries the fds of a new worker (control pipes, stdout, stderr,
  park socket). The copy forks twice again: one process stays parked (so the
  same checkpoint can be restored again), the other becomes the worker with
  those fds and returns into the serve loop, exactly where the checkpoint was made.
- end of file (the supervisor dropped the checkpoint, or is gone): it exits.

Threads other than the main one do not exist in a forked copy.
"""

from __future__ import annotations

import os
import socket
import sys

WAKE_FDS = 6  # ctrl in, ctrl out, ack in, stdout, stderr, park socket
OOM_WORKER = b"1000"  # the worker dies first at the memory limit...
OOM_PARKED = b"0"  # ...a parked copy only after it


def _set_oom(value: bytes) -> None:
    try:
        with open("/proc/self/oom_score_adj", "wb") as f:
            f.write(value)
    except OSError:
        pass


def _own_group() -> None:
    try:
        os.setpgid(0, 0)
    except OSError:
        pass


def _close(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _orphan() -> tuple:
    """Fork twice: ``(0, 0)`` in the grandchild (an orphan), else ``(its pid or -1,
    the middle process)``. The middle reports the pid, then exits; its exit (the
    teardown of a copy of every mapping) is not waited for here: the caller reaps it."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(r)
        try:
            pid = os.fork()
        except OSError:
            os._exit(1)
        if pid == 0:
            os.close(w)
            _own_group()
            return 0, 0
        # Its own process group before anyone learns its pid, so that killing the
        # worker's group (a restore may follow at once) can never catch it.
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # it did so itself already
        os.write(w, b"%d\n" % pid)
        os._exit(0)
    os.close(w)
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(r, 32)
        if not chunk:
            break
        data += chunk
    os.close(r)
    return (int(data) if data.strip() else -1), middle


def handle(worker) -> bool:
    """Serve one request on the worker's park socket; False once it is closed."""
    try:
        msg, fds, _flags, _addr = socket.recv_fds(worker.park, 64, 1)
    except OSError:
        return False
    if not msg:
        return False
    if msg != b"checkpoint" or len(fds) != 1:
        _close(*fds)
        _reply(worker.park, b"error: bad park request")
        return True
    worker.flush_streams()
    try:
        pid, middle = _orphan()
    except OSError as exc:
        _close(*fds)
        _reply(worker.park, b"error: " + str(exc).encode("utf-8", "replace"))
        return True
    if pid == 0:
        _park(worker, fds[0])  # never returns in the parked copy; returns in a woken one
        return True
    worker.forked.add(middle)  # reaped by the serve loop once it has exited
    _close(fds[0])
    _reply(worker.park, b"error: fork failed" if pid < 0 else b"ok %d" % pid)
    return True


def _reply(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def _park(worker, fd: int) -> None:
    """The parked copy: detach from the worker, then wait for wake-ups."""
    _set_oom(OOM_PARKED)  # its own process group already: the worker's kill misses it
    worker.park.close()
    _close(worker.ctrl_in, worker.ctrl_out, worker.ack_in, worker.reap_r, worker.reap_w)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    chan = socket.socket(fileno=fd)
    chan.setblocking(True)
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(chan, 64, WAKE_FDS)
        except InterruptedError:
            continue
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)  # dropped
        if msg != b"wake" or len(fds) != WAKE_FDS:
            _close(*fds)
            continue
        try:
            pid, middle = _orphan()
        except OSError:
            pid, middle = -1, 0
        if pid == 0:
            _become_worker(worker, chan, fds)
            return
        _close(*fds)
        if pid < 0:
            _reply(chan, b"error: fork failed")
        if middle:
            os.waitpid(middle, 0)


def _become_worker(worker, chan: socket.socket, fds: list) -> None:
    """A woken copy: take the new worker's fds and go back to serving cells."""
    _set_oom(OOM_WORKER)  # a process group of its own, as the supervisor expects
    ctrl_in, ctrl_out, ack_in, out_w, err_w, park = fds
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    _close(out_w, err_w)
    for fd in (ctrl_in, ctrl_out, ack_in, park):
        os.set_inheritable(fd, False)
    os.set_blocking(ack_in, False)
    worker.ctrl_in, worker.ctrl_out, worker.ack_in = ctrl_in, ctrl_out, ack_in
    worker.park = socket.socket(fileno=park)
    worker.park.setblocking(True)
    worker.reap_r, worker.reap_w = os.pipe()
    os.set_blocking(worker.reap_r, False)
    os.set_blocking(worker.reap_w, False)
    worker.forked = set()
    worker.pid = os.getpid()
    _reply(chan, b"worker %d" % worker.pid)
    chan.close()
    try:
        sys.stdout.flush()
    except Exception:
        pass
