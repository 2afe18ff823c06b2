"""The checks of a session's settings that several modules make: docker sizes, network
names and image references (``Limits``, ``SessionOptions``, the image builder)."""

from __future__ import annotations

import re

from .errors import InvalidOption

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([kmgt]?)(?:i?b)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_MIN_MEMORY = 6 * 2**20  # docker refuses a smaller memory limit
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")


def _check_size(what: str, value: object, minimum: int = 1) -> None:
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidOption(
            f"{what} {value!r} is not a size: use a number with an optional unit k, m or g, "
            "such as '512m' or '2g' (nothing else, no mount options)",
            option=what,
        )
    if float(match.group(1)) * _UNITS[match.group(2).lower()] < minimum:
        shown = "6m" if minimum == _MIN_MEMORY else "1"
        raise InvalidOption(f"{what} {value!r} is too small: give at least {shown}", option=what)


def size_bytes(value: object) -> int:
    """A docker size (``"512m"``, ``"2g"``) in bytes; 0 for anything that is not one."""
    match = _SIZE.match(value.strip()) if isinstance(value, str) else None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()]) if match else 0


def check_network(network: str) -> str:
    """``network`` unless it would remove the container's network isolation.

    Raises:
        InvalidOption: ``host``, ``container:…`` or not a plain docker network name.
    """
    if network == "host":
        raise InvalidOption(
            "network 'host' would give the code the host's own network stack and is "
            "refused: use 'bridge' (default), 'none', or a network made with "
            "`docker network create`",
            option="network",
        )
    if isinstance(network, str) and network.startswith("container:"):
        raise InvalidOption(
            f"network {network!r} would join another container's network namespace and "
            "is refused: use 'bridge' (default), 'none', or a network made with "
            "`docker network create`",
            option="network",
        )
    if not isinstance(network, str) or not _NETWORK.match(network):
        raise InvalidOption(
            f"network {network!r} is not a docker network name: use 'bridge' (default), "
            "'none', or the name of a network made with `docker network create`",
            option="network",
        )
    return network


def check_image_ref(ref: str) -> str:
    """``ref`` if it is one image reference (it becomes a Dockerfile ``FROM`` line).

    Raises:
        InvalidOption: whitespace, a newline, a control character or a leading ``-``.
    """
    if not isinstance(ref, str) or not _IMAGE_REF.match(ref):
        raise InvalidOption(
            f"base image {ref!r} is not an image reference (whitespace, newlines, control "
            "characters and a leading '-' are refused): give one such as 'python:3.12-slim'",
            option="base_image",
        )
    return ref
