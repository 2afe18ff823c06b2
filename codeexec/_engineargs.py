"""Pure pieces of the engine itself: its flavour (docker or podman) and its runtimes.

Nothing here runs a process; ``docker.py`` and ``_dockerverbs.py`` do. The gVisor
pieces: which runtimes the engine offers (``docker info``), the ``daemon.json``
snippet ``codeexec doctor`` shows when ``runsc`` is missing, and the reaper: a
throwaway container that removes what a failed gVisor start left on the engine's
host (below).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

Flavour = Literal["docker", "podman"]

VERSION_ARGV = ["version", "--format", "{{json .}}"]


def flavour_of(version: Mapping[str, Any]) -> Flavour:
    """Which engine a ``version --format '{{json .}}'`` answer comes from.

    podman's answer has a ``Client`` and no ``Server`` with docker's components,
    or names podman in its version's components; docker's names "Docker Engine".
    """
    server = version.get("Server") or {}
    names = [str(c.get("Name", "")) for c in server.get("Components") or [] if c]
    if any("podman" in n.lower() for n in names):
        return "podman"
    client = version.get("Client") or {}
    if "podman" in json.dumps(client).lower() or (not server and "APIVersion" in client):
        return "podman"
    return "docker"


# podman's runc cannot raise a limit above podman's own, and as root without
# CAP_SYS_RESOURCE (a container, a CI machine) podman's defaults are above them:
# every start fails "error setting rlimit". These are low enough for any host.
PODMAN_ULIMITS = ("nofile=1024:4096", "nproc=4096:4096")


def workspace_tmpfs(size: str, uid: int, flavour: Flavour) -> str:
    """The ``--tmpfs`` of /workspace, owned by the session user ``uid``.

    podman 4.3 refuses ``uid=``/``gid=`` there; its ``U`` option chowns the tmpfs
    to the container's user instead (the same ``uid``: the run's ``--user``).
    """
    owner = "mode=0700,U" if flavour == "podman" else f"uid={uid},gid={uid},mode=0700"
    return f"/workspace:rw,exec,nosuid,nodev,size={size},{owner}"


def ps_label(label: str, flavour: Flavour) -> str:
    """The ``ps --format`` field of one label (podman has no ``.Label``)."""
    if flavour == "podman":
        return '{{index .Labels "' + label + '"}}'
    return '{{.Label "' + label + '"}}'


IMAGES_FORMAT = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedAt}}\t{{.Size}}"


def images_rows(out: str, flavour: Flavour) -> list[dict[str, str]]:
    """``images --format`` rows as docker's ``{{json .}}`` keys.

    docker prints one JSON object a line; podman one JSON array for ``{{json .}}``,
    so podman gets ``IMAGES_FORMAT`` (tab-separated) instead.
    """
    if flavour != "podman":
        return [json.loads(line) for line in out.splitlines() if line.strip()]
    keys = ("Repository", "Tag", "ID", "CreatedAt", "Size")
    rows = [dict(zip(keys, line.split("\t"), strict=False)) for line in out.splitlines()]
    return [r for r in rows if len(r) == len(keys)]


# -- gVisor ---------------------------------------------------------------------------

RUNTIMES_ARGV = ["info", "--format", "{{json .Runtimes}}"]
RUNSC_PATH = "/usr/bin/runsc"


def runtime_names(answer: str) -> dict[str, str]:
    """The engine's runtimes and the path of each, from ``RUNTIMES_ARGV``'s answer."""
    try:
        runtimes = json.loads(answer or "{}")
    except ValueError:
        return {}
    if not isinstance(runtimes, dict):
        return {}
    return {str(k): str((v or {}).get("path", "")) for k, v in runtimes.items()}


def is_gvisor(runtime: str | None, runtimes: Mapping[str, str] | None = None) -> bool:
    """Whether a session on ``runtime`` runs under gVisor (by its path when known)."""
    if not runtime or runtime == "runc":
        return False
    path = (runtimes or {}).get(runtime, "")
    return "runsc" in (path or runtime)


def runsc_snippet() -> str:
    """The ``daemon.json`` lines that give an engine the ``runsc`` runtime."""
    return json.dumps(
        {"runtimes": {"runsc": {"path": RUNSC_PATH, "runtimeArgs": ["--network=host"]}}}
    )


def runsc_fix(runtime: str = "runsc") -> str:
    """How to give the engine the gVisor runtime ``runtime`` (``codeexec doctor``)."""
    return (
        f"install gVisor (Debian: `apt-get install runsc`), merge {runsc_snippet()} into "
        "/etc/docker/daemon.json (keep what is there; scripts/engine_runtimes.py does it), "
        "then reload the engine with `kill -HUP $(pidof dockerd)`"
        + (f"; or name a runtime the engine has instead of {runtime!r}" if runtime else "")
    )


# A gVisor start that fails after the sandbox was created ("OCI runtime start
# failed") leaves the container's containerd shim, the runsc sandbox and gofer running
# with no container the engine lists: `docker rm` does not reach them (measured with
# Docker 20.10 and runsc 2023). Killing the shim makes containerd clean up the rest
# (runsc delete: sandbox, gofer and state). Only the engine's host can see them, so a
# throwaway container in the host's PID namespace finds the shims by their `-id`.
# It knows its engine's shims by their containerd `-address` and `-namespace`, the
# ones its own shim (whose id starts with its host name) has: a second engine's
# shims on the same host, and the engine's plugins (namespace plugins.moby), are
# never touched. Ids given on the command line are reaped at once; with none, it
# reaps every shim of its engine whose id is not in the list on stdin (the containers
# the engine listed just before) and that started well before its own shim: a
# container made since that list has a shim younger than GRACE seconds before it.
REAPER_GRACE = 30
REAPER_SCRIPT = f"""\
GRACE = {REAPER_GRACE}
import os, sys
known = set(sys.stdin.read().split())
targets = set(sys.argv[1:])
me = os.uname().nodename
uptime = float(open("/proc/uptime").read().split()[0])
tick = os.sysconf("SC_CLK_TCK")
shims = []
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        argv = open("/proc/" + pid + "/cmdline", "rb").read().decode("utf-8", "replace")
        stat = open("/proc/" + pid + "/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    argv = argv.split("\\0")
    if not argv[0].endswith("containerd-shim-runc-v2"):
        continue
    opts = dict(zip(argv[1::2], argv[2::2]))
    where = (opts.get("-address", ""), opts.get("-namespace", ""))
    shims.append((int(pid), opts.get("-id", ""), where, uptime - int(stat[19]) / tick))
mine = [(w, age) for p, i, w, age in shims if i.startswith(me)]
for pid, cid, where, age in shims:
    if not mine or where != mine[0][0] or cid.startswith(me) or not cid:
        continue
    if cid in targets or (not targets and cid not in known and age > mine[0][1] + GRACE):
        os.kill(pid, 9)
        print(cid)
"""
LABEL_REAPER = "codeexec.reaper"


def reaper_argv(image: str, container_name: str, ids: Sequence[str] = ()) -> list[str]:
    """The ``docker run`` of the reaper (see ``REAPER_SCRIPT``) in ``image``.

    runc, not the session's runtime: only a container in the host's PID namespace
    sees the shims. Its only capability is KILL; no network, no writable mount.
    """
    return [
        "run", "--rm", "--interactive", "--name", container_name,
        "--label", f"{LABEL_REAPER}=1", "--runtime", "runc", "--pid", "host",
        "--network", "none", "--user", "0:0", "--cap-drop", "ALL", "--cap-add", "KILL",
        "--security-opt", "no-new-privileges", "--read-only", "--entrypoint", "python3",
        image, "-c", REAPER_SCRIPT, *ids,
    ]  # fmt: skip


def started_id(stdout: str) -> str:
    """The container id ``docker run --detach`` printed before its start failed, or ``""``."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) == 64 and all(c in "0123456789abcdef" for c in last) else ""
