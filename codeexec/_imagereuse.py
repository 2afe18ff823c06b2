"""Which existing env image a new dependency set can be installed on top of.

An image for the set S is built from the closest image codeexec committed for a
strict subset P of S on the same base image id, the same trusted stage (executor,
install script, CA bundle, index settings: ``BuildContext.stage``): the install then
adds only what S needs beyond P. ``closest_image`` asks the engine (through the
``Docker`` it is given); the checks on what it answers are pure functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._dockerargs import (
    LABEL_BASE,
    LABEL_DEPS,
    LABEL_IMAGE,
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_SESSION,
)
from .errors import DockerError, DockerNotAvailable

if TYPE_CHECKING:
    from .docker import Docker

# Set by ``docker commit --change`` on an env image only (never on a trusted stage or
# a container): the stage key its packages were installed on, and its base image id.
LABEL_STAGE = "codeexec.stage"
LABEL_BASE_ID = "codeexec.base-id"
# Each build on an earlier image adds a layer; overlay2 mounts at most 128. A chain
# this deep starts again from the base (a new trusted stage) instead.
MAX_LAYERS = 100
# What a container adds to its image's labels: a committed session is no env image.
_CONTAINER_LABELS = (LABEL_MANAGED, LABEL_SESSION, LABEL_POOL)


def commit_message(stage: str) -> str:
    """The comment ``docker commit`` gives an env image's install layer."""
    return f"codeexec install, stage {stage}"


def reuse_enabled() -> bool:
    """Whether builds start from the closest existing env image (``CODEEXEC_BUILD_REUSE``, on)."""
    return os.environ.get("CODEEXEC_BUILD_REUSE", "1").strip().lower() not in ("0", "false", "no")


def env_labels(dependencies: Sequence[str], base: str, base_id: str, stage: str) -> dict[str, str]:
    """The labels of a committed env image: what ``rank_parents`` reads back."""
    return {
        LABEL_IMAGE: "1",
        LABEL_DEPS: json.dumps(list(dependencies)),
        LABEL_BASE: base,
        LABEL_BASE_ID: base_id,
        LABEL_STAGE: stage,
    }


def label_changes(labels: Mapping[str, str]) -> list[str]:
    """``docker commit --change`` lines setting ``labels`` (values quoted for the parser).

    Requirements hold no ``$`` or backslash (``images.validate_dependency``), so a
    JSON string is a Dockerfile double-quoted word with the same value.
    """
    return [f"LABEL {k}={json.dumps(v)}" for k, v in sorted(labels.items())]


def built_here(history: Sequence[Mapping[str, Any]], *, base_id: str, stage: str) -> bool:
    """Whether ``docker history`` shows codeexec's install on top and the base below.

    The newest layer must be the install's commit (``commit_message``): an image
    someone built ``FROM`` an env image inherits its labels but not this. The base
    image's id must be among the ids of the chain, so the image derives from that
    base image, not from another one with the same files.
    """
    if not history or history[0].get("Comment") != commit_message(stage):
        return False
    want = base_id.removeprefix("sha256:")
    return any(str(row.get("ID") or "").removeprefix("sha256:") == want for row in history)


@dataclass(frozen=True)
class Parent:
    """The image a build starts from, and the requirements it already holds."""

    image_id: str
    dependencies: tuple[str, ...]


def rank_parents(
    wanted: Sequence[str],
    *,
    stage: str,
    base_id: str,
    base: Mapping[str, Any],
    candidates: Sequence[Mapping[str, Any]],
) -> list[Parent]:
    """The candidates a build of ``wanted`` may start from, the best first.

    ``base`` and ``candidates`` are ``docker image inspect`` objects. A candidate
    counts only if its labels say codeexec committed it (``env_labels``) with this
    ``stage`` and ``base_id``, it carries no container's labels, its requirement list
    is a strict subset of ``wanted``, its layers begin with the base image's layers
    and number fewer than ``MAX_LAYERS``. The one holding the most requirements comes
    first; ties go to the newest image, then the smallest id. The caller still
    checks the chosen one's history (``built_here``).
    """
    want = set(wanted)
    base_layers = _layers(base)
    if not base_id or base.get("Id") != base_id or not base_layers or not want:
        return []
    ranked: list[tuple[int, str, Parent]] = []
    for image in sorted(candidates, key=lambda i: str(i.get("Id") or "")):
        deps = _requirements(image, stage, base_id)
        layers = _layers(image)
        image_id = str(image.get("Id") or "")
        # An image without requirements is a `docker build`, never a commit: not one.
        if not deps or not image_id or not set(deps) < want:
            continue
        if not len(base_layers) < len(layers) < MAX_LAYERS:
            continue
        if layers[: len(base_layers)] != base_layers:
            continue
        ranked.append(
            (len(set(deps)), str(image.get("Created") or ""), Parent(image_id, tuple(deps)))
        )
    # Stable: among full ties the smallest id, first in the loop, stays first.
    ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return [parent for _, _, parent in ranked]


def closest_image(
    docker: Docker, dependencies: Sequence[str], *, stage: str, base_id: str
) -> Parent | None:
    """The env image to install ``dependencies`` on, or None to build from the base.

    Three docker calls: the ids of the env images of ``stage``, one inspect of them
    and the base image (layers and labels as the engine reports them), then the
    chosen image's history (``built_here``; the next best is tried if that fails).
    A lookup that fails (an image removed in between) means building from the base.
    """
    if not dependencies or not base_id:
        return None
    try:
        ids = docker.image_ids({LABEL_IMAGE: "1", LABEL_STAGE: stage})
        inspected = docker.inspect_images([base_id, *ids]) if ids else []
        base = next((i for i in inspected if i.get("Id") == base_id), {})
        others = [i for i in inspected if i is not base]
        ranked = rank_parents(dependencies, stage=stage, base_id=base_id, base=base,
                              candidates=others)  # fmt: skip
        for parent in ranked[:3]:
            if built_here(docker.image_history(parent.image_id), base_id=base_id, stage=stage):
                return parent
    except DockerNotAvailable:
        raise
    except DockerError:
        return None
    return None


def _requirements(image: Mapping[str, Any], stage: str, base_id: str) -> list[str] | None:
    labels = (image.get("Config") or {}).get("Labels") or {}
    if labels.get(LABEL_IMAGE) != "1" or labels.get(LABEL_STAGE) != stage or not stage:
        return None
    if labels.get(LABEL_BASE_ID) != base_id or any(k in labels for k in _CONTAINER_LABELS):
        return None
    try:
        deps = json.loads(labels.get(LABEL_DEPS, ""))
    except ValueError:
        return None
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        return None
    return deps


def _layers(image: Mapping[str, Any]) -> list[str]:
    layers = (image.get("RootFS") or {}).get("Layers") or []
    return [str(layer) for layer in layers] if isinstance(layers, list) else []
