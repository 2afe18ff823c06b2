"""Files in and out of a session, and packages installed into a running one.

A mixin of ``ContainerSession`` (over ``_executing.py``): files travel over the
executor protocol (this engine refuses ``docker cp`` into a read-only-root container,
even to a tmpfs), and installs run pip inside the container with the image's index
settings and CA bundle.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from . import images
from ._executing import INSTALL_TIMEOUT, Executing
from ._fileclient import CHUNK
from ._shared import constants
from .errors import CodeexecError, FileTransferError, InvalidDependency
from .models import ExecResult, SessionInfo

MAX_FILE_BYTES = 32 * 2**20  # read_file's default cap: it returns the bytes in memory
UNLIMITED = 2**62  # download's cap when none is given
SITE_DIR = constants.SITE_DIR  # runtime installs; the worker appends it to sys.path
_INSTALL_CODE = """\
def __codeexec_install():
    import importlib, subprocess, sys
    rc = subprocess.call([sys.executable, "-m", "pip", "install", "--no-input",
                          "--disable-pip-version-check", "--no-cache-dir",
                          "--progress-bar", "off", "--target", {target!r}, *{packages!r}])
    if {target!r} not in sys.path:
        sys.path.append({target!r})  # after the stdlib and the image's packages
    sys.path_importer_cache.pop({target!r}, None)
    importlib.invalidate_caches()
    if rc:
        class InstallError(Exception):
            pass
        raise InstallError(f"pip exited with status {{rc}}: see the output above")
try:
    __codeexec_install()
finally:
    del __codeexec_install
"""


class FilesAndPackages(Executing):
    """``write_file``, ``read_file``, ``upload``, ``download`` and ``install``."""

    @property
    def info(self) -> SessionInfo:  # ContainerSession's
        raise NotImplementedError

    def write_file(self, remote_path: str, data: bytes, *, mode: int = 0o644) -> int:
        """Write ``data`` to ``remote_path`` in the container (relative to /workspace).

        Any size: it travels in chunks of a few MiB.

        Raises:
            FileTransferError: not writable there (``.code`` says why).
        """
        with self._using() as client:
            return client.put_file(remote_path, data, mode)

    def read_file(self, remote_path: str, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        """The bytes of ``remote_path`` in the container (relative to /workspace).

        ``max_bytes`` (default 32 MiB) guards this process's memory: the whole file
        is returned at once. Raise it, or use :meth:`download`, which streams to disk.

        Raises:
            FileTransferError: missing, larger than ``max_bytes``, or unreadable.
        """
        with self._using() as client:
            return client.get_file(remote_path, max_bytes)

    def upload(self, local_path: str | os.PathLike[str], remote_path: str) -> int:
        """Copy a host file into the container; returns the bytes written.

        A ``remote_path`` that is empty or ends with ``/`` names a directory: the file
        keeps its name there (like ``cp``). An existing directory without the slash is
        refused (``FileTransferError``), never replaced. Any size: the file is read
        and sent in chunks, so memory stays bounded.
        """
        path = Path(local_path)
        if not remote_path or remote_path.endswith("/"):
            remote_path += path.name
        try:
            f = path.open("rb")
            mode = os.fstat(f.fileno()).st_mode & 0o777
        except OSError as exc:
            raise FileTransferError(f"cannot read {path}: {exc.strerror}") from None
        with f, self._using() as client:
            return client.put_stream(remote_path, _chunks(f, path), mode)

    def download(
        self,
        remote_path: str,
        local_path: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
    ) -> Path:
        """Copy a file out of the container to ``local_path``; returns the file's path.

        An existing directory, or a path that ends with ``/`` (created if missing),
        keeps the remote file's name inside it, like ``cp``. Any size (``max_bytes``
        caps it, default none): it streams to a temporary file next to the target,
        renamed into place once complete, so a failed download leaves nothing.

        Raises:
            FileTransferError: missing, too large, unreadable, or not writable here.
        """
        target = local_target(local_path, PurePosixPath(remote_path).name)
        limit = UNLIMITED if max_bytes is None else max_bytes
        temp = target.parent / f".{target.name}.{secrets.token_hex(4)}.part"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # The umask applies, as to a file cp writes; O_EXCL never follows a link.
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise FileTransferError(f"cannot write {target}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f, self._using() as client:
                client.get_stream(remote_path, limit, f.write)
            os.replace(temp, target)
        except OSError as exc:
            raise FileTransferError(f"cannot write {target}: {exc.strerror}") from None
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        return target

    def install(
        self,
        packages: Sequence[str],
        *,
        timeout: float | None = INSTALL_TIMEOUT,
        on_output: Callable[[str, str], None] | None = None,
        allow_urls: bool = False,
    ) -> ExecResult:
        """Install packages into the running session; they import without a restart.

        The requirement strings are validated like those given to :meth:`start`.
        pip runs inside the container with the host's index settings and CA bundle
        (baked into the image); packages land in ``/tmp/.codeexec-site``. Returns pip's
        run as an ``ExecResult`` (``status="error"``, ename ``InstallError`` if it failed).

        Raises:
            InvalidDependency: a string is not a plain requirement (nothing ran).
            CodeexecError: the session has no network (``network="none"``).
        """
        code = self._install_code(packages, allow_urls=allow_urls)
        with self._using() as client:
            return client.execute(
                code, timeout=timeout, on_output=on_output, output_limit=self.output_limit,
                limits=self.result_limits, store_history=False,
            )  # fmt: skip

    def _install_code(self, packages: Sequence[str], *, allow_urls: bool = False) -> str:
        specs = images.normalize_dependencies(packages, allow_urls=allow_urls)
        if not specs:
            raise InvalidDependency("install() needs at least one package")
        if self.info.network == "none":
            raise CodeexecError(
                f"session {self.name!r} runs with network 'none', so it cannot download "
                "packages; start a session with them as dependencies instead"
            )
        return _INSTALL_CODE.format(packages=list(specs), target=SITE_DIR)


def local_target(local_path: str | os.PathLike[str], name: str) -> Path:
    """Where a download of ``name`` lands: inside ``local_path`` when it is a
    directory or ends with a separator (then it is created), else at ``local_path``."""
    text = os.fspath(local_path)
    target = Path(text)
    if text.endswith(("/", os.sep)) or target.is_dir():
        if not name or name in (".", ".."):
            raise FileTransferError(f"give the file to download, not a directory ({name!r})")
        return target / name
    return target


def _chunks(f: BinaryIO, path: Path) -> Iterator[bytes]:
    try:
        chunk = f.read(CHUNK)
        yield chunk  # at least one, empty for an empty file
        while chunk:
            chunk = f.read(CHUNK)
            if chunk:
                yield chunk
    except OSError as exc:
        raise FileTransferError(f"cannot read {path}: {exc.strerror}") from None
