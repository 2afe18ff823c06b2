"""Where running sessions were last seen, so a new process reaches one without docker.

`codeexec exec` in a fresh process would otherwise spend two docker CLI calls
(~40–80 ms) finding the container before a sub-millisecond execution. This cache
is never the source of truth — Docker labels are: an entry is used only when the
executor at the remembered address completes a handshake with the remembered
token, which proves it is the same session; anything else falls back to the label
lookup and drops the entry.

Entries hold the session token, so the directory is 0700 and files 0600.
``CODEEXEC_SESSION_CACHE=0`` turns the cache off; ``XDG_CACHE_HOME`` moves it.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

_KEPT_ENV = "CODEEXEC_TOKEN="


def _directory() -> Path | None:
    if os.environ.get("CODEEXEC_SESSION_CACHE", "1") in ("0", "", "false", "no"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    # One folder per engine: the same session name on two engines is two sessions.
    engine = "\0".join(
        os.environ.get(k, "") for k in ("CODEEXEC_DOCKER", "DOCKER_HOST", "DOCKER_CONTEXT")
    )
    key = f"{zlib.crc32(engine.encode()):08x}"
    return Path(base) / "codeexec" / "sessions" / key


def recall(name: str) -> dict[str, Any] | None:
    """The remembered ``docker inspect`` subset of session ``name``, if any."""
    directory = _directory()
    if directory is None:
        return None
    try:
        data = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("Id") else None


def remember(name: str, container: dict[str, Any]) -> None:
    """Keep what reaching the session needs: id, labels, token, published port."""
    directory = _directory()
    if directory is None:
        return
    config = container.get("Config") or {}
    entry = {
        "Id": container.get("Id", ""),
        "Name": container.get("Name", ""),
        "Config": {
            "Image": config.get("Image", ""),
            "Labels": config.get("Labels") or {},
            "Env": [e for e in config.get("Env") or [] if str(e).startswith(_KEPT_ENV)],
        },
        "NetworkSettings": {"Ports": (container.get("NetworkSettings") or {}).get("Ports")},
        "State": {"Status": "running", "Running": True},
    }
    import tempfile

    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # created 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entry, f)
        os.replace(tmp, directory / f"{name}.json")
    except OSError:
        pass  # a cache that cannot be written only costs speed


def forget(name: str, container_id: str | None = None) -> None:
    """Drop the entry (only if it still names ``container_id``, when given)."""
    directory = _directory()
    if directory is None:
        return
    if container_id is not None:
        entry = recall(name)
        if entry is None or entry.get("Id") != container_id:
            return
    try:
        (directory / f"{name}.json").unlink()
    except OSError:
        pass
