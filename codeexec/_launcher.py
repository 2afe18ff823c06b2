"""Running one session container and claiming a warm one: what start and the pool share.

Both ``ContainerSession.start`` and the warm pool (``pool.py``) make containers
here, so neither reaches into the other: a ``Launched`` container is a ref plus an
authenticated connection, and ``ContainerSession`` turns one into a session.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from . import images
from ._channel import Channel, Connect
from ._dockerargs import session_run_spec
from .docker import Docker
from .errors import DockerError, register_secret
from .models import SessionRef, Transport
from .options import SessionOptions

log = logging.getLogger("codeexec")


def find_image(docker: Docker, options: SessionOptions) -> images.ImageLookup:
    """Look up the image these options need (two docker calls); never builds."""
    return images.find_image(
        docker, base_image=options.base_image, dependencies=options.dependencies
    )


def ensure_image(
    docker: Docker,
    options: SessionOptions,
    *,
    on_line: Callable[[str], None] | None = None,
    found: images.ImageLookup | None = None,
) -> str:
    """The tag of the image these options need, built (confined by them) if missing.

    Raises:
        ImageBuildError: the build failed (``log_tail`` holds the end of its log).
    """
    found = found or find_image(docker, options)
    if found.exists:
        return found.tag
    return images.build_image(
        docker, found, on_line=on_line, timeout=options.build_timeout, limits=options.limits,
        runtime=options.runtime,
    )  # fmt: skip


@dataclass(frozen=True)
class Launched:
    """A running container whose executor answered: its ref and the open connection."""

    ref: SessionRef
    channel: Channel

    def discard(self, docker: Docker) -> None:
        """Close the connection and remove the container."""
        self.channel.close()
        docker.rm(self.ref.id)


def launch(
    docker: Docker,
    options: SessionOptions,
    *,
    image: str,
    name: str | None,
    connect: Connect | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Launched:
    """Run one container from ``image`` and wait for its handshake.

    ``name=None`` makes an unclaimed warm-pool container (``pool.py``). A failed
    start leaves no half-made container behind.

    Raises:
        ContainerStartError: the container did not start or never answered.
    """
    token = secrets.token_urlsafe(32)
    register_secret(token)
    spec = session_run_spec(
        options,
        image=image,
        name=name,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        suffix=secrets.token_hex(3 if name is not None else 6),
    )
    if on_progress is not None:
        on_progress(f"starting container {spec.container_name}")
    hidden = {"CODEEXEC_TOKEN": token}  # in the docker CLI's environment, never its argv
    if options.env:  # the worker's environment variables (workerproc.py sets them)
        hidden["CODEEXEC_ENV"] = json.dumps(options.env)
    container_id = docker.run(spec, hidden)
    try:
        ref = docker.inspect(container_id)
        channel = Channel(
            name=name or "", ref=ref, docker=docker, transport=options.transport, connect=connect
        )
        channel.wait_ready(options.ready_timeout)
    except BaseException:
        docker.rm(container_id)
        raise
    return Launched(ref, channel)


def claim(
    docker: Docker, warm: Launched, name: str, transport: Transport = "auto"
) -> Launched | None:
    """Give a warm pool container the identity of session ``name`` (one ``docker rename``).

    None when it is gone (idle timeout, removed from outside); it is then removed.
    """
    new_name = f"codeexec-{name}-{secrets.token_hex(3)}"
    try:
        docker.rename(warm.ref.id, new_name)
    except DockerError as exc:
        log.info("warm pool container %s unusable: %s", warm.ref.info.container_name, exc)
        warm.discard(docker)
        return None
    ref = replace(warm.ref, info=replace(warm.ref.info, name=name, container_name=new_name))
    channel = warm.channel.renamed(name, ref, transport)
    return Launched(ref, channel)
