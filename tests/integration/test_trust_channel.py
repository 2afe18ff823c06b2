"""The channel authenticates both ends, against the real engine (issue 10; docs/protocol.md).

A session dies behind codeexec's back (``docker rm -f``) and another program binds
its old 127.0.0.1 port: the address cache, and any object still holding the
session, point there. Whatever way the host comes back (``codeexec exec``,
``codeexec cp``, ``ContainerSession.attach``, a reconnect), it must refuse that
program with a clear error, having sent it neither the token, nor the code, nor
any file: only a hello with a random nonce.

The impostor (``tests/impostor.py``) answers like a version-1 executor would, or
replays a genuine challenge it got from the real executor while it still ran.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codeexec import ContainerSession, NoSuchSession
from tests.impostor import V1_HELLO, Impostor, frame, split_frames

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("CODEEXEC_DOCKER", "docker")
CODE = "print('the secret code 5d1e')"
FILE_CONTENT = b"the uploaded secret 0b7a\n"
GONE = "a program that is not its executor now answers on its last known address"


class Victim:
    """A running session, the port it was reached on, and its token."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.session = ContainerSession.start(name)  # remembers its address (the cache)
        self.token = self.session._channel.ref.token
        out = subprocess.run(
            [DOCKER, "port", self.session.container_id, "8888/tcp"],
            capture_output=True, text=True, timeout=60,
        ).stdout.split()  # fmt: skip
        assert out, "the executor port is not published"
        self.port = int(out[0].rpartition(":")[2])

    def a_genuine_challenge(self) -> dict[str, Any]:
        """What the real executor answers any local stranger's hello."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            nonce = base64.b64encode(secrets.token_bytes(32)).decode()
            sock.sendall(frame({"op": "hello", "protocol": 2, "nonce": nonce}))
            data = b""
            while not split_frames(data) and (chunk := sock.recv(65536)):
                data += chunk
        (answer,) = split_frames(data)
        return answer

    def die_behind_codeexecs_back(self) -> None:
        subprocess.run(
            [DOCKER, "rm", "-f", self.session.container_id], capture_output=True, timeout=60
        )


@pytest.fixture
def victim(session_name: str) -> Iterator[Victim]:
    victim = Victim(session_name)
    try:
        yield victim
    finally:
        victim.session.close()
        victim.die_behind_codeexecs_back()  # whatever the test did


def _impostor_on(victim: Victim, answer: str) -> Impostor:
    """Kill the session and bind its port, answering hellos as ``answer`` says."""
    challenge = victim.a_genuine_challenge() if answer == "replayed-challenge" else V1_HELLO
    victim.die_behind_codeexecs_back()
    # docker-proxy lets go of the port when the container is gone: retry until then.
    return Impostor(victim.port, answer=challenge, bind_timeout=60)


def _sent_nothing_but_a_hello(impostor: Impostor, victim: Victim) -> None:
    received = impostor.received
    assert victim.token.encode() not in received, "the token went to the impostor"
    assert b"5d1e" not in received, "the code went to the impostor"
    assert b"0b7a" not in received, "the file went to the impostor"
    assert base64.b64encode(FILE_CONTENT) not in received
    for frames in impostor.frames():
        assert [f["op"] for f in frames] == ["hello"]
        assert set(frames[0]) == {"op", "protocol", "nonce"}
    assert impostor.frames(), "the host never came back: the test proved nothing"


def _codeexec(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The CLI of this checkout, as a separate process sharing the address cache."""
    return subprocess.run(
        [sys.executable, "-m", "codeexec", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


ANSWERS = ["v1-executor", "replayed-challenge"]


@pytest.mark.parametrize("answer", ANSWERS)
def test_cli_exec_refuses_a_program_on_a_dead_sessions_port(victim: Victim, answer: str) -> None:
    with _impostor_on(victim, answer) as impostor:
        done = _codeexec("exec", "-s", victim.name, CODE)
    _sent_nothing_but_a_hello(impostor, victim)
    assert done.returncode == 3, done
    assert f"no running session named {victim.name!r}" in done.stderr
    assert GONE in done.stderr
    assert "forged" not in done.stdout


@pytest.mark.parametrize("answer", ANSWERS)
def test_attach_refuses_a_program_on_a_dead_sessions_port(victim: Victim, answer: str) -> None:
    with _impostor_on(victim, answer) as impostor:
        with pytest.raises(NoSuchSession, match=f"no running session named {victim.name!r}") as e:
            ContainerSession.attach(victim.name)
    _sent_nothing_but_a_hello(impostor, victim)
    assert GONE in str(e.value)
    if answer == "replayed-challenge":  # the replay was a real one
        assert impostor.answer["type"] == "challenge"


def test_cli_upload_sends_no_file_to_a_program_on_a_dead_sessions_port(
    victim: Victim, tmp_path: Path
) -> None:
    (tmp_path / "data.txt").write_bytes(FILE_CONTENT)
    with _impostor_on(victim, "v1-executor") as impostor:
        done = _codeexec("cp", "data.txt", f"{victim.name}:data.txt", cwd=tmp_path)
    _sent_nothing_but_a_hello(impostor, victim)
    assert done.returncode == 3, done
    assert GONE in done.stderr


def test_a_session_reconnecting_refuses_a_program_on_its_port(
    victim: Victim, tmp_path: Path
) -> None:
    (tmp_path / "data.txt").write_bytes(FILE_CONTENT)
    session = victim.session  # still holds the address and the token
    assert session.execute("1 + 1").value == "2"
    with _impostor_on(victim, "v1-executor") as impostor:
        # The first call finds its connection dead; the next ones reconnect.
        for attempt in (lambda: session.execute(CODE), lambda: session.execute(CODE),
                        lambda: session.upload(tmp_path / "data.txt", "data.txt")):  # fmt: skip
            with pytest.raises(NoSuchSession, match=f"session {victim.name!r} is gone"):
                attempt()
    _sent_nothing_but_a_hello(impostor, victim)
    assert len(impostor.streams) == 2  # the two reconnects, each refused
    session.stop()
