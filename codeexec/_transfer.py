"""Files in and out of a session, and packages installed into a running one.

A mixin of ``ContainerSession`` (over ``_executing.py``): files travel over the
executor protocol (this engine refuses ``docker cp`` into a read-only-root container,
even to a tmpfs), and installs run pip inside the container with the image's index
settings and CA bundle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from . import images
from ._executing import Executing
from ._shared import constants
from .errors import CodeexecError, FileTransferError, InvalidDependency
from .models import ExecResult, SessionInfo

MAX_FILE_BYTES = 32 * 2**20  # one transfer travels in one frame (base64 inside 64 MiB)
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

        Raises:
            FileTransferError: too large (over ``MAX_FILE_BYTES``) or not writable there.
        """
        if len(data) > MAX_FILE_BYTES:
            raise FileTransferError(
                f"{len(data)} bytes is over the {MAX_FILE_BYTES} byte "
                f"({MAX_FILE_BYTES // 2**20} MiB) limit for one file transfer; split it, "
                "or install it with the image",
                code="too_large",
            )
        with self._using() as client:
            return client.put_file(remote_path, data, mode)

    def read_file(self, remote_path: str, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        """The bytes of ``remote_path`` in the container (relative to /workspace).

        Raises:
            FileTransferError: missing, larger than ``max_bytes``, or unreadable.
        """
        with self._using() as client:
            return client.get_file(remote_path, min(max_bytes, MAX_FILE_BYTES))

    def upload(self, local_path: str | os.PathLike[str], remote_path: str) -> int:
        """Copy a host file into the container; returns the bytes written.

        A ``remote_path`` that is empty or ends with ``/`` names a directory: the file
        keeps its name there (like ``cp``). An existing directory without the slash is
        refused (``FileTransferError``), never replaced.
        """
        path = Path(local_path)
        if not remote_path or remote_path.endswith("/"):
            remote_path += path.name
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise FileTransferError(
                    f"{path} is {size} bytes, over the {MAX_FILE_BYTES} byte "
                    f"({MAX_FILE_BYTES // 2**20} MiB) limit for one file transfer",
                    code="too_large",
                )
            data = path.read_bytes()
        except OSError as exc:
            raise FileTransferError(f"cannot read {path}: {exc.strerror}") from None
        return self.write_file(remote_path, data, mode=path.stat().st_mode & 0o777)

    def download(
        self,
        remote_path: str,
        local_path: str | os.PathLike[str],
        *,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> Path:
        """Copy a file out of the container to ``local_path`` (a directory keeps the name)."""
        data = self.read_file(remote_path, max_bytes=max_bytes)
        target = Path(local_path)
        if target.is_dir():
            target = target / PurePosixPath(remote_path).name
        try:
            target.write_bytes(data)
        except OSError as exc:
            raise FileTransferError(f"cannot write {target}: {exc.strerror}") from None
        return target

    def install(
        self,
        packages: Sequence[str],
        *,
        timeout: float | None = 600.0,
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
        specs = images.normalize_dependencies(packages, allow_urls=allow_urls)
        if not specs:
            raise InvalidDependency("install() needs at least one package")
        if self.info.network == "none":
            raise CodeexecError(
                f"session {self.name!r} runs with network 'none', so it cannot download "
                "packages; start a session with them as dependencies instead"
            )
        code = _INSTALL_CODE.format(packages=list(specs), target=SITE_DIR)
        return self.execute(code, timeout=timeout, on_output=on_output)
