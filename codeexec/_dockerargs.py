"""Pure pieces of the docker seam: labels, argument lists, error mapping, parsing.

Nothing here runs a process; ``docker.py`` does, and re-exports these names. Unit
tests assert the exact argument lists without an engine (python-on-whales style).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._dockererrors import classify as classify, reason as reason
from ._engineargs import PODMAN_ULIMITS, Flavour, workspace_tmpfs
from ._shared import constants
from .models import ImageInfo, Limits, SessionInfo, SessionRef

if TYPE_CHECKING:
    from .options import SessionOptions

LABEL_SESSION = "codeexec.session"
LABEL_MANAGED = "codeexec.managed"
LABEL_DEPS = "codeexec.deps"
LABEL_NETWORK = "codeexec.network"
LABEL_CREATED = "codeexec.created"
LABEL_IDLE = "codeexec.idle_timeout"
LABEL_MAX_LIFETIME = "codeexec.max_lifetime"
LABEL_IMAGE = "codeexec.image"
LABEL_BASE = "codeexec.base"
LABEL_POOL = "codeexec.pool"
# Settings without a label of their own, as JSON: `start` compares them (options.py).
LABEL_SETTINGS = "codeexec.settings"
_SETTINGS_KEYS = ("base_image", "limits", "runtime", "read_only", "env")
_RECORDED = (*_SETTINGS_KEYS, "timeout", "output_limit")  # these two: defaults, not compared
# An MCP server reaches only the sessions labelled with its scope (registry.py).
LABEL_SCOPE = "codeexec.scope"
# An unclaimed warm-pool container is POOL_CONTAINER_PREFIX + hex; claiming renames it
# to codeexec-<session>-<6 hex> (a running container's labels cannot change: pool.py).
POOL_CONTAINER_PREFIX = "codeexec_pool_"
_CLAIMED_POOL_NAME = re.compile(r"^codeexec-([A-Za-z0-9][A-Za-z0-9_.-]{0,62})-[0-9a-f]{6}$")
EXECUTOR_PORT = constants.EXECUTOR_PORT
EXECUTOR_UID = constants.EXECUTOR_UID
# A container's docker log (json-file, read by `docker logs`) stays under MAX_FILES x SIZE.
LOG_MAX_SIZE = "5m"
LOG_MAX_FILES = 2

# The executor runs by path from its root-owned directory, never with `python -m`,
# which would put the working directory (the code's /workspace) first on sys.path;
# -s keeps the user site directory off it too (codeexec_executor/__main__.py).
EXECUTOR_MAIN = constants.EXECUTOR_MAIN


def executor_command(verb: str) -> tuple[str, ...]:
    """The command line of one executor process in a session container."""
    return ("python", "-s", EXECUTOR_MAIN, verb)


class Command(list[str]):
    """An argument list with helpers that skip unset options."""

    def opt(self, name: str, value: object) -> Command:
        if value is not None:
            self.extend([name, str(value)])
        return self

    def flag(self, name: str, on: bool) -> Command:
        if on:
            self.append(name)
        return self

    def repeat(self, name: str, values: Iterable[object]) -> Command:
        for value in values:
            self.extend([name, str(value)])
        return self


@dataclass(frozen=True)
class RunSpec:
    """Everything ``docker run`` needs to start one session container."""

    image: str
    container_name: str
    labels: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Sequence[str] = ()  # names passed as `-e NAME`, values via our environment
    network: str = "bridge"
    limits: Limits = Limits()
    runtime: str | None = None
    read_only: bool = True
    publish: bool = True
    command: Sequence[str] = executor_command("serve")
    extra_args: Sequence[str] = ()


def run_argv(spec: RunSpec, flavour: Flavour = "docker") -> list[str]:
    """The ``docker run`` arguments for a session: the secure defaults live here.

    No ``--init``: the executor's supervisor is PID 1 (it reaps like an init), so
    the kernel shields it from the code's SIGKILL and SIGSTOP.
    """
    lim = spec.limits
    cmd = Command(["run", "--detach", "--rm"])
    cmd.opt("--name", spec.container_name)
    cmd.repeat("--label", [f"{k}={v}" for k, v in sorted(spec.labels.items())])
    confine(cmd, lim, uid=EXECUTOR_UID, flavour=flavour)
    cmd.flag("--read-only", spec.read_only)
    cmd.opt("--tmpfs", f"/tmp:rw,exec,nosuid,nodev,size={lim.tmp_size},mode=1777")
    cmd.opt("--tmpfs", workspace_tmpfs(lim.workspace_size, EXECUTOR_UID, flavour))
    cmd.opt("--workdir", "/workspace")
    cmd.opt("--runtime", spec.runtime)
    cmd.opt("--network", spec.network)
    if spec.publish and spec.network != "none":
        cmd.opt("--publish", f"127.0.0.1::{EXECUTOR_PORT}")
    cmd.repeat("--env", [f"{k}={v}" for k, v in sorted(spec.env.items())])
    cmd.repeat("--env", spec.secret_env)
    cmd.extend(spec.extra_args)
    cmd.append(spec.image)
    cmd.extend(spec.command)
    return cmd


def confine(cmd: Command, limits: Limits, *, uid: int, flavour: Flavour = "docker") -> Command:
    """Add the secure defaults that every container codeexec runs gets.

    Session containers and dependency installs alike (docs/security.md): an
    unprivileged user, no capabilities, no privilege escalation, bounded memory, CPU
    and process count, no core dumps, and a docker log capped on the host's disk.
    """
    cmd.opt("--user", f"{uid}:{uid}")
    cmd.opt("--cap-drop", "ALL")
    cmd.opt("--security-opt", "no-new-privileges")
    cmd.opt("--memory", limits.memory).opt("--memory-swap", limits.memory)
    cmd.opt("--cpus", limits.cpus).opt("--pids-limit", limits.pids)
    cmd.opt("--ulimit", "core=0")
    cmd.repeat("--ulimit", PODMAN_ULIMITS if flavour == "podman" else ())
    cmd.opt("--log-driver", "json-file")
    cmd.opt("--log-opt", f"max-size={LOG_MAX_SIZE}").opt("--log-opt", f"max-file={LOG_MAX_FILES}")
    return cmd


def engine_args(host: str, context: str) -> list[str]:
    """The global options that pick an engine: ``--context`` wins over ``-H``."""
    if context:
        return ["--context", context]
    return ["--host", host] if host else []


def relay_argv(container: str, command: Sequence[str]) -> list[str]:
    """The ``docker exec`` arguments of an exec relay.

    An exec'd process inherits the container's environment; ``CODEEXEC_TOKEN=``
    blanks the token there, since the session's code can read that process's
    ``/proc/<pid>/environ``.
    """
    return ["exec", "-i", "--env", "CODEEXEC_TOKEN=", container, *command]


def parse_inspect(data: Mapping[str, Any]) -> SessionInfo:
    """A ``docker container inspect`` object as a ``SessionInfo``."""
    config = data.get("Config") or {}
    return _session_info(
        labels=dict(config.get("Labels") or {}),
        container_id=str(data.get("Id", "")),
        container_name=str(data.get("Name", "")).lstrip("/"),
        image=str(config.get("Image", "")),
        status=str((data.get("State") or {}).get("Status", "")),
    )


def parse_ref(data: Mapping[str, Any], engine: str = "") -> SessionRef:
    """A ``docker container inspect`` object as a ``SessionRef``: the one place it is read."""
    info = parse_inspect(data)
    labels = info.labels
    settings: dict[str, Any] = {}
    if LABEL_DEPS in labels:
        settings["dependencies"] = list(info.dependencies)
    if LABEL_NETWORK in labels:
        settings["network"] = info.network
    if LABEL_IDLE in labels:
        settings["idle_timeout"] = float(info.idle_timeout or 0)
    if LABEL_MAX_LIFETIME in labels:
        settings["max_lifetime"] = float(info.max_lifetime or 0)
    try:
        recorded = json.loads(labels.get(LABEL_SETTINGS, "{}"))
    except ValueError:
        recorded = {}
    if isinstance(recorded, dict):
        settings.update({k: recorded[k] for k in _RECORDED if k in recorded})
    return SessionRef(
        info=info,
        running=bool((data.get("State") or {}).get("Running")),
        address=published_port(data),
        bridge=bridge_address(data),
        token=container_env(data).get("CODEEXEC_TOKEN", ""),
        image_id=str(data.get("Image", "")),
        engine=engine,
        settings=settings,
    )


def published_port(data: Mapping[str, Any]) -> tuple[str, int] | None:
    """The host address and port that the container's executor port is published on."""
    ports = (data.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{EXECUTOR_PORT}/tcp") or []:
        host = binding.get("HostIp") or "127.0.0.1"
        return ("127.0.0.1" if host in ("0.0.0.0", "") else host, int(binding["HostPort"]))
    return None


def bridge_address(data: Mapping[str, Any]) -> tuple[str, int] | None:
    """The container's own address on its (IPv4) bridge network and the executor port.

    ``None`` for a container without one (``--network none``, ``host``) or one on
    several networks with no clear choice: only the first network that has an
    address is used, as docker lists it.
    """
    settings = data.get("NetworkSettings") or {}
    if str((data.get("HostConfig") or {}).get("NetworkMode") or "") in ("none", "host"):
        return None
    for network in (settings.get("Networks") or {}).values():
        ip = str((network or {}).get("IPAddress") or "")
        if ip:
            return (ip, EXECUTOR_PORT)
    ip = str(settings.get("IPAddress") or "")
    return (ip, EXECUTOR_PORT) if ip else None


def image_info(ref: Mapping[str, Any], data: Mapping[str, Any]) -> ImageInfo:
    """An image from a ``docker images`` row and its ``docker image inspect`` object."""
    labels = (data.get("Config") or {}).get("Labels") or {}
    return ImageInfo(
        tag=f"{ref['Repository']}:{ref['Tag']}",
        image_id=ref["ID"],
        dependencies=tuple(json.loads(labels.get(LABEL_DEPS, "[]"))),
        base_image=labels.get(LABEL_BASE, ""),
        created=str(ref.get("CreatedAt", "")),
        size=str(ref.get("Size", "")),
    )


def container_env(data: Mapping[str, Any]) -> dict[str, str]:
    env = {}
    for item in (data.get("Config") or {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def pool_session_name(container_name: str) -> str:
    """The session name a claimed warm-pool container carries in its name, else ``""``."""
    match = _CLAIMED_POOL_NAME.match(container_name.lstrip("/"))
    return match.group(1) if match else ""


def _session_info(
    *, labels: Mapping[str, str], container_id: str, container_name: str, image: str, status: str
) -> SessionInfo:
    idle = labels.get(LABEL_IDLE)
    lifetime = labels.get(LABEL_MAX_LIFETIME)
    name = labels.get(LABEL_SESSION, "")
    if not name and labels.get(LABEL_POOL):
        name = pool_session_name(container_name)
    try:
        deps = tuple(json.loads(labels.get(LABEL_DEPS, "[]")))
    except ValueError:
        deps = ()
    return SessionInfo(
        name=name,
        container_id=container_id,
        container_name=container_name,
        image=image,
        status=status,
        dependencies=deps,
        network=labels.get(LABEL_NETWORK, "bridge"),
        created=labels.get(LABEL_CREATED, ""),
        idle_timeout=float(idle) if idle else None,
        max_lifetime=float(lifetime) if lifetime else None,
        labels=dict(labels),
    )


def session_run_spec(
    options: SessionOptions, *, image: str, name: str | None, created: str, suffix: str
) -> RunSpec:
    """The ``RunSpec`` of a session container: its labels, name and environment.

    ``name=None`` makes a warm-pool container: labelled ``codeexec.pool=1`` with no
    session label; ``pool.py`` claims it later by renaming it. The token is not here:
    it travels as ``--env CODEEXEC_TOKEN`` with its value in the CLI's environment.
    ``options.scope`` labels the container ``codeexec.scope=<scope>`` (``LABEL_SCOPE``).
    """
    idle = str(float(options.idle_timeout or 0))
    lifetime = str(float(options.max_lifetime or 0))
    settings = {**options.container_settings(), **options.exec_defaults()}
    labels = {
        LABEL_MANAGED: "1",
        LABEL_DEPS: json.dumps(list(options.dependencies)),
        LABEL_NETWORK: options.network,
        LABEL_CREATED: created,
        LABEL_IDLE: idle,
        LABEL_MAX_LIFETIME: lifetime,
        LABEL_SETTINGS: json.dumps(
            {k: settings[k] for k in _RECORDED if k in settings}, sort_keys=True
        ),
    }
    if options.scope is not None:
        labels[LABEL_SCOPE] = options.scope
    if name is None:
        labels[LABEL_POOL] = "1"
        container_name = f"{POOL_CONTAINER_PREFIX}{suffix}"
    else:
        labels[LABEL_SESSION] = name
        container_name = f"codeexec-{name.lower().strip('.-_')}-{suffix}"
    return RunSpec(
        image=image,
        container_name=container_name,
        labels=labels,
        env={"CODEEXEC_IDLE_TIMEOUT": idle, "CODEEXEC_MAX_LIFETIME": lifetime},
        secret_env=("CODEEXEC_TOKEN", "CODEEXEC_ENV") if options.env else ("CODEEXEC_TOKEN",),
        network=options.network,
        limits=options.limits,
        runtime=options.runtime,
        read_only=options.read_only,
    )
