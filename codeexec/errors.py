"""Exceptions raised by codeexec.

Every exception codeexec raises on purpose derives from :class:`CodeexecError`;
its message is written for a person or a model to act on::

    CodeexecError
    ├── InvalidOption              an option was refused before any build or container
    │   └── InvalidDependency      a requirement string was refused before any build
    ├── SessionExists              the name is taken by a session with other settings
    ├── SnapshotError              a snapshot is missing, corrupt or does not fit here
    ├── DockerError                a docker CLI call failed (argv, returncode, stderr)
    │   ├── DockerNotAvailable     no docker CLI, or the engine does not answer
    │   ├── NoSuchSession          no running container carries that session name
    │   ├── ImageBuildError        `docker build` failed (log_tail holds the end)
    │   └── ContainerStartError    the container did not start or never answered
    └── ExecutorError              talking to the executor inside the container failed
        ├── ProtocolError          a malformed or unexpected frame
        ├── HandshakeError         the peer did not prove it is the session's executor,
        │                          or refused the host's proof or protocol version
        ├── ConnectionLost         the connection dropped; the session may be gone
        ├── SessionBusy            another execution is running in this session
        ├── FileTransferError      upload/download refused (missing, too large, I/O)
        └── CheckpointError        a checkpoint could not be made, restored or dropped

An exception raised by the *user's* code is not a Python exception here: it comes
back as data, ``ExecResult(status="error", error=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

_SECRETS: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a value (a session token) that must never appear in a message."""
    if value and len(value) >= 8:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """Replace every registered secret in ``text`` with ``***``."""
    for secret in tuple(_SECRETS):  # a copy: other threads may register one meanwhile
        if secret in text:
            text = text.replace(secret, "***")
    return text


class CodeexecError(Exception):
    """Base class of every error codeexec raises on purpose."""

    def __init__(self, message: str, *, cli_message: str | None = None) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        # The same message in the `codeexec` command's words (commands, not Python calls).
        self.cli_message = redact(cli_message) if cli_message else message

    def __str__(self) -> str:
        return self.message


class InvalidOption(CodeexecError):
    """An option (limit, network, base image, CA bundle) was refused before any docker call.

    ``option`` names the keyword argument refused (``"memory"``), when there is one.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class InvalidDependency(InvalidOption):
    """A dependency string is not a plain pip requirement and was refused."""


class SessionExists(CodeexecError):
    """A session of that name already runs with different settings."""


class SnapshotError(CodeexecError):
    """A snapshot is missing, corrupt or does not fit this engine; nothing was started."""


class DockerError(CodeexecError):
    """A docker CLI call failed; carries the command, exit code and output."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stdout: str = "",
        stderr: str = "",
        cli_message: str | None = None,
    ) -> None:
        super().__init__(message, cli_message=cli_message)
        self.argv = [redact(a) for a in argv]
        self.returncode = returncode
        self.stdout = redact(stdout)
        self.stderr = redact(stderr)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, argv={self.argv!r}, "
            f"returncode={self.returncode!r})"
        )


class DockerNotAvailable(DockerError):
    """The docker CLI is missing or the Docker engine does not answer."""


class NoSuchSession(DockerError):
    """No running session (container) has that name."""


class ImageBuildError(DockerError):
    """Building the session image failed; ``log_tail`` holds the end of the log."""

    def __init__(self, message: str, *, log_tail: str = "", **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.log_tail = redact(log_tail)


class ContainerStartError(DockerError):
    """The container did not start, or its executor never answered the handshake."""

    def __init__(self, message: str, *, container_log: str = "", **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.container_log = redact(container_log)


class ExecutorError(CodeexecError):
    """Talking to the executor inside the container failed."""


class ProtocolError(ExecutorError):
    """The peer sent a malformed or unexpected frame."""


class HandshakeError(ExecutorError):
    """The handshake failed: the peer did not prove it is this session's executor (it
    was then sent nothing but a nonce), or it refused the host's proof or protocol."""


class ConnectionLost(ExecutorError):
    """The connection to the executor dropped; the session may be gone."""


class SessionBusy(ExecutorError):
    """Another execution is running in this session; wait for it or interrupt it."""


class FileTransferError(ExecutorError):
    """A file upload or download was refused (missing path, too large, I/O error)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code  # the executor's code: not_found, too_large, io_error


class CheckpointError(ExecutorError):
    """A checkpoint could not be made, restored or dropped (``code`` says why)."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        # no_such_checkpoint, checkpoint_exists, checkpoint_limit, checkpoint_lost,
        # files_too_large, checkpoint_failed, bad_request
        self.code = code
