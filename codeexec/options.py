"""``SessionOptions``: every setting a session is started with, validated once, here.

``ContainerSession.start``, the warm pool (whose key they are), the container's
run spec and the CLI and MCP faces all take this one frozen value instead of
re-typing the bundle (httpx passes ``Timeout`` and ``Limits`` objects the same way).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from . import images
from .errors import CodeexecError, InvalidOption
from .models import Limits, ResultLimits, SessionRef, Transport, check_image_ref, check_network

DEFAULT_IDLE_TIMEOUT = 3600.0
DEFAULT_MAX_LIFETIME = 24 * 3600.0
READY_TIMEOUT = 30.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_TRANSPORTS = ("auto", "tcp", "exec")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
_RUNTIME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_LIMIT_KEYWORDS = ("memory", "cpus", "pids")


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CodeexecError(
            f"invalid session name {name!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_lifetime(max_lifetime: float | None, what: str = "max_lifetime") -> float | None:
    """``max_lifetime`` (or another ``what``) as seconds (None: no limit), or a clear error."""
    if max_lifetime is None:
        return None
    if isinstance(max_lifetime, bool) or not isinstance(max_lifetime, int | float):
        raise InvalidOption(
            f"{what} must be a number of seconds, not {max_lifetime!r}", option=what
        )
    if not max_lifetime >= 0:
        raise InvalidOption(
            f"{what} must be >= 0 seconds (0 or None: no limit), not {max_lifetime}", option=what
        )
    return float(max_lifetime) or None


def check_runtime(runtime: str | None) -> str | None:
    """``runtime`` if it can name a docker runtime (whether the engine has it, docker says)."""
    if runtime is not None and not (isinstance(runtime, str) and _RUNTIME.match(runtime)):
        raise InvalidOption(
            f"runtime {runtime!r} is not a docker runtime name: give one that `docker info` "
            "lists under Runtimes, such as 'runc' or 'runsc'",
            option="runtime",
        )
    return runtime


@dataclass(frozen=True)
class SessionOptions:
    """Every setting of a session, checked when the value is made (nothing runs first).

    The container settings (``dependencies`` … ``scope``) are fixed when its
    container starts; ``start`` compares them with a running session of the same
    name. The others (``timeout``, ``output_limit``, ``result_limits``,
    ``transport``) belong to one connection, and ``build_timeout``/``ready_timeout``
    to the start itself. Arguments as for :meth:`ContainerSession.start`.

    Raises:
        InvalidDependency: a dependency is not a plain requirement.
        InvalidOption: a network, base image, limit or transport is malformed or
            would remove isolation.
    """

    dependencies: tuple[str, ...] = ()
    base_image: str | None = None
    network: str = "bridge"
    limits: Limits = Limits()
    runtime: str | None = None
    read_only: bool = True
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    max_lifetime: float | None = DEFAULT_MAX_LIFETIME
    scope: str | None = None
    transport: Transport = "auto"
    timeout: float | None = None
    output_limit: int | None = None
    result_limits: ResultLimits | None = None
    allow_urls: bool = False
    build_timeout: float = images.BUILD_TIMEOUT
    ready_timeout: float = READY_TIMEOUT
    env: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        deps = self.dependencies
        specs = [deps] if isinstance(deps, str) else list(deps)
        set_ = object.__setattr__
        set_(self, "dependencies", images.normalize_dependencies(specs, allow_urls=self.allow_urls))
        if not isinstance(self.limits, Limits):
            raise InvalidOption(f"limits must be a codeexec.Limits, not {self.limits!r}")
        if self.result_limits is not None and not isinstance(self.result_limits, ResultLimits):
            raise InvalidOption(
                f"result_limits must be a codeexec.ResultLimits, not {self.result_limits!r}"
            )
        check_network(self.network)
        check_image_ref(self.base_image or images.default_base_image())
        set_(self, "max_lifetime", validate_lifetime(self.max_lifetime))
        idle = validate_lifetime(self.idle_timeout, "idle_timeout")
        set_(self, "idle_timeout", self.idle_timeout if idle is None else idle)
        check_runtime(self.runtime)
        set_(self, "env", check_env(self.env, reserved="CODEEXEC_") or None)
        if self.transport not in _TRANSPORTS:
            raise InvalidOption(
                f"transport {self.transport!r} is not one of {', '.join(_TRANSPORTS)}",
                option="transport",
            )

    @classmethod
    def of(cls, options: SessionOptions | None = None, **overrides: Any) -> SessionOptions:
        """``options`` (default: the defaults) with keyword overrides, validated once.

        Besides the fields: ``requirements_file`` adds its lines to ``dependencies``,
        and ``memory``/``cpus``/``pids`` replace those of ``limits`` (an explicit
        ``limits`` wins, as it always has).
        """
        base = options or cls()
        unknown = (
            set(overrides) - {f.name for f in fields(cls)} - {"requirements_file", *_LIMIT_KEYWORDS}
        )
        if unknown:
            raise TypeError(f"unknown session option(s): {', '.join(sorted(unknown))}")
        limit_values = {k: overrides.pop(k) for k in _LIMIT_KEYWORDS if k in overrides}
        if overrides.get("limits") is None:
            overrides.pop("limits", None)
            if limit_values:
                overrides["limits"] = replace(base.limits, **limit_values)
        requirements = overrides.pop("requirements_file", None)
        if requirements:
            deps = overrides.get("dependencies", base.dependencies)
            deps = [deps] if isinstance(deps, str) else list(deps)
            overrides["dependencies"] = deps + images.read_requirements_file(requirements)
        return replace(base, **overrides) if overrides else base

    @property
    def image_base(self) -> str:
        """The base image, ``$CODEEXEC_BASE_IMAGE`` or the default when unset."""
        return self.base_image or images.default_base_image()

    def container_settings(self) -> dict[str, Any]:
        """The settings fixed in the container, as ``SessionRef.settings`` reads them back."""
        limits = asdict(self.limits)
        limits["cpus"] = float(limits["cpus"])  # 2 and 2.0 are one limit
        return {
            "dependencies": list(self.dependencies),
            "base_image": self.image_base,
            "network": self.network,
            "limits": limits,
            "runtime": self.runtime,
            "read_only": self.read_only,
            "idle_timeout": float(self.idle_timeout or 0),
            "max_lifetime": float(self.max_lifetime or 0),
            "scope": self.scope,
            "env": _digest(self.env) if self.env else None,
        }

    def exec_defaults(self) -> dict[str, Any]:
        """``timeout`` and ``output_limit`` when set: a later ``attach`` defaults to them."""
        given = {"timeout": self.timeout, "output_limit": self.output_limit}
        return {k: v for k, v in given.items() if v is not None}

    def pool_key(self) -> str:
        """Containers with equal keys are interchangeable (the warm pool's key)."""
        return json.dumps(self.container_settings(), sort_keys=True)

    def differences(self, ref: SessionRef) -> list[str]:
        """The settings in which the running ``ref`` differs from these, described.

        A setting the container does not record (one started by an older codeexec)
        is not compared.
        """
        wanted = self.container_settings()
        return [
            f"{key} {_shown(ref.settings[key])} (asked: {_shown(value)})"
            for key, value in wanted.items()
            if key in ref.settings and _canonical(ref.settings[key]) != _canonical(value)
        ]


def check_env(env: Mapping[str, str] | None, *, reserved: str = "") -> dict[str, str]:
    """``env`` as a dict of environment variables, or an InvalidOption naming ``env``."""
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise InvalidOption(f"env must be a mapping of names to strings, not {env!r}", option="env")
    for name, value in env.items():
        if not (isinstance(name, str) and _ENV_NAME.match(name)) or (
            reserved and name.startswith(reserved)
        ):
            raise InvalidOption(
                f"environment variable name {name!r} is refused: use letters, digits and "
                f"'_', not starting with a digit{f' or {reserved}' if reserved else ''}",
                option="env",
            )
        if not isinstance(value, str) or "\0" in value:
            raise InvalidOption(f"env value of {name} must be a string without NUL", option="env")
    return dict(env)


def _digest(env: Mapping[str, str]) -> str:
    """What a label records of ``env``: names and a hash, never the values."""
    data = json.dumps(sorted(env.items())).encode()
    return f"{','.join(sorted(env))}:{hashlib.sha256(data).hexdigest()[:16]}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return json.dumps(value) if value else "none"
    return repr(value)
