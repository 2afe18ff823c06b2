"""Add codeexec's gVisor runtimes to a Docker engine's daemon.json, keeping everything else.

Usage: ``python3 scripts/engine_runtimes.py [PATH]`` (default
/etc/docker/daemon.json). The file is merged, never replaced: every key already
there stays as it is, a runtime of the same name that differs is left alone (and
reported), and the file is only rewritten when something was added. The exit code
says what the caller (scripts/ensure_docker.sh) must do next:

- 0: nothing changed;
- 3: runtimes were added: a running dockerd picks them up on SIGHUP;
- 4: ``experimental`` was added too: a running dockerd only reads that at start.

Two runtimes, because gVisor cannot checkpoint a sandbox that uses the host's
network stack ("checkpoint not supported when using hostinet"):

- ``runsc`` (``--network=host``): gVisor uses the container's own network
  namespace, so published ports work, the normal TCP transport;
- ``runsc-ckpt`` (``--network=none``): no network but loopback inside the sandbox,
  reached by the exec relay, and ``docker checkpoint`` works: the whole-session
  snapshot method "checkpoint" (docs/snapshots.md).

Standard library only: it runs before the project's virtual environment exists.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

RUNSC = "/usr/bin/runsc"
RUNTIMES: dict[str, dict[str, Any]] = {
    "runsc": {"path": RUNSC, "runtimeArgs": ["--network=host"]},
    "runsc-ckpt": {"path": RUNSC, "runtimeArgs": ["--network=none"]},
}
UNCHANGED, RELOAD, RESTART = 0, 3, 4


def merge(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``config`` with the runtimes and ``experimental`` added; and what was added.

    Never changes a key that is already set: an existing runtime of the same name,
    or ``"experimental": false``, is the owner's choice (reported by the caller).
    """
    merged = dict(config)
    added: list[str] = []
    runtimes = dict(merged.get("runtimes") or {})
    for name, spec in RUNTIMES.items():
        if name not in runtimes:
            runtimes[name] = spec
            added.append(f"runtimes.{name}")
    if added:
        merged["runtimes"] = runtimes
    if "experimental" not in merged:
        merged["experimental"] = True
        added.append("experimental")
    return merged, added


def conflicts(config: dict[str, Any]) -> list[str]:
    """Keys the owner set differently from what codeexec would have added."""
    found = []
    runtimes = config.get("runtimes") or {}
    for name, spec in RUNTIMES.items():
        if name in runtimes and runtimes[name] != spec:
            found.append(f"runtimes.{name} is {json.dumps(runtimes[name])}, kept")
    if config.get("experimental", True) is not True:
        found.append("experimental is false, kept: the checkpoint snapshot method needs it")
    return found


def update(path: str) -> int:
    """Merge the file at ``path`` in place (atomically); return the exit code above."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        text = ""
    config = json.loads(text) if text.strip() else {}
    if not isinstance(config, dict):
        raise SystemExit(f"{path} does not hold a JSON object; not touching it")
    for note in conflicts(config):
        print(f"engine_runtimes: {note}", file=sys.stderr)
    merged, added = merge(config)
    if not added:
        return UNCHANGED
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".daemon.json.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(merged, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    print(f"engine_runtimes: added {', '.join(added)} to {path}", file=sys.stderr)
    return RESTART if "experimental" in added else RELOAD


def main(argv: list[str]) -> int:
    paths = [a for a in argv if not a.startswith("-")]
    return update(paths[0] if paths else "/etc/docker/daemon.json")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
