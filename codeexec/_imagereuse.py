"""Which existing env image a new dependency set can be installed on top of (pure).

An image for the set S is built from the closest image codeexec committed for a
strict subset P of S on the same base image id, the same trusted stage (executor,
install script, CA bundle, index settings: ``BuildContext.stage``): the install then
adds only what S needs beyond P. Every candidate is checked here against its
``docker image inspect`` object; nothing runs a process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._dockerargs import (
    LABEL_BASE,
    LABEL_DEPS,
    LABEL_IMAGE,
    LABEL_MANAGED,
    LABEL_POOL,
    LABEL_SESSION,
)

# Set by ``docker commit --change`` on an env image only (never on a trusted stage or
# a container): the stage key its packages were installed on, and its base image id.
LABEL_STAGE = "codeexec.stage"
LABEL_BASE_ID = "codeexec.base-id"
# Each build on an earlier image adds a layer; overlay2 mounts at most 128. A chain
# this deep starts again from the base (a new trusted stage) instead.
MAX_LAYERS = 100
# What a container adds to its image's labels: a committed session is no env image.
_CONTAINER_LABELS = (LABEL_MANAGED, LABEL_SESSION, LABEL_POOL)


def reuse_enabled() -> bool:
    """Whether builds start from the closest existing env image (``CODEEXEC_BUILD_REUSE``, on)."""
    return os.environ.get("CODEEXEC_BUILD_REUSE", "1").strip().lower() not in ("0", "false", "no")


def env_labels(dependencies: Sequence[str], base: str, base_id: str, stage: str) -> dict[str, str]:
    """The labels of a committed env image: what ``pick_parent`` reads back."""
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


@dataclass(frozen=True)
class Parent:
    """The image a build starts from, and the requirements it already holds."""

    image_id: str
    dependencies: tuple[str, ...]


def pick_parent(
    wanted: Sequence[str],
    *,
    stage: str,
    base_id: str,
    base: Mapping[str, Any],
    candidates: Sequence[Mapping[str, Any]],
) -> Parent | None:
    """The candidate holding the most of ``wanted``, or None.

    ``base`` and ``candidates`` are ``docker image inspect`` objects. A candidate
    counts only if its labels say codeexec committed it (``env_labels``) with this
    ``stage`` and ``base_id``, it carries no container's labels, its requirement list
    is a strict subset of ``wanted``, and its layers begin with the base image's
    layers (ids compared, not names: a label alone cannot point at another base)
    and number fewer than ``MAX_LAYERS``.
    Ties go to the newest image, then the smallest id.
    """
    want = set(wanted)
    base_layers = _layers(base)
    if not base_id or base.get("Id") != base_id or not base_layers or not want:
        return None
    best: tuple[int, str] = (-1, "")
    found: Parent | None = None
    for image in sorted(candidates, key=lambda i: str(i.get("Id") or "")):
        deps = _requirements(image, stage, base_id)
        layers = _layers(image)
        image_id = str(image.get("Id") or "")
        if deps is None or not image_id or not set(deps) < want:
            continue
        if not len(base_layers) < len(layers) < MAX_LAYERS:
            continue
        if layers[: len(base_layers)] != base_layers:
            continue
        rank = (len(set(deps)), str(image.get("Created") or ""))
        if rank > best:
            best, found = rank, Parent(image_id, tuple(deps))
    return found


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
