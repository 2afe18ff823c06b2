"""Image builds with and without the package cache volume, and the warm pool claim.

Each build set is built on a base image unique to this run (so its cache volume
starts empty and no earlier env image can be reused): with the defaults (reuse on,
nothing to reuse yet: what a first build costs), without the cache
(``CODEEXEC_BUILD_CACHE=0``, pip's ``--no-cache-dir`` as before the cache), with the
empty cache (the cache's own overhead), then the set plus one package twice: with
the warm cache from the base, and with the default settings installed on the set's
image (``CODEEXEC_BUILD_REUSE``, codeexec/_imagereuse.py). One sample each: a heavy
build takes minutes. ``--heavy`` adds numpy+pandas+matplotlib; the light
set (six, then six+packaging) always runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeexec import images
from codeexec.docker import Docker, cache_volume_name

from . import _util as u

LIGHT = (("six",), "packaging")
HEAVY = (("matplotlib", "numpy", "pandas"), "six")


def _base(tag: str) -> str:
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(
            f"FROM {images.default_base_image()}\nENV CODEEXEC_BENCH_RUN={u.RUN_ID}\n"
        )
        u.docker("build", "-q", "--label", u.BENCH_LABEL, "-t", tag, ctx, timeout=600,
                 env={"DOCKER_BUILDKIT": "0"})  # fmt: skip
    return tag


def _build_ms(
    docker: Docker, base: str, deps: tuple[str, ...], cache: bool, reuse: bool = False,
    keep: list[str] | None = None,
) -> float:  # fmt: skip
    os.environ["CODEEXEC_BUILD_CACHE"] = "1" if cache else "0"
    os.environ["CODEEXEC_BUILD_REUSE"] = "1" if reuse else "0"
    try:
        t0 = time.perf_counter()
        tag = images.ensure_image(docker, base_image=base, dependencies=deps)
        elapsed = (time.perf_counter() - t0) * 1000
    finally:
        os.environ.pop("CODEEXEC_BUILD_CACHE", None)
        os.environ.pop("CODEEXEC_BUILD_REUSE", None)
    if keep is None:
        u.docker("rmi", "-f", tag, check=False)
    else:
        keep.append(tag)
    return elapsed


def run(results: dict[str, Any], log: Callable[[str], None], *, heavy: bool) -> None:
    docker = Docker()
    base = _base(f"codeexec-bench-build:{u.RUN_ID}")
    volume = cache_volume_name(docker.image_id(base) or "")
    kept: list[str] = []
    try:
        for key, (deps, extra) in (("light", LIGHT), *((("heavy", HEAVY),) if heavy else ())):
            log(f"build ({key}): {'+'.join(deps)} with the defaults, without cache, cold "
                f"cache, +{extra} warm cache, +{extra} on the set's image")  # fmt: skip
            results[f"build_{key}"] = {
                "deps": "+".join(deps),
                "extra": extra,
                # First (a conservative order): the defaults, reuse on with nothing to reuse.
                "first_ms": _build_ms(docker, base, deps, cache=False, reuse=True),
                "no_cache_ms": _build_ms(docker, base, deps, cache=False),
                "cold_ms": _build_ms(docker, base, deps, cache=True, keep=kept),
                "warm_plus_one_ms": _build_ms(docker, base, (*deps, extra), cache=True),
                "reuse_plus_one_ms": _build_ms(docker, base, (*deps, extra), False, reuse=True),
            }
            u.docker("rmi", "-f", *kept, check=False)
            kept.clear()
    finally:
        if kept:
            u.docker("rmi", "-f", *kept, check=False)
        u.docker("volume", "rm", volume, check=False)
        u.docker("rmi", "-f", base, check=False)


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key in ("light", "heavy"):
        b = r.get(f"build_{key}")
        if b:
            out.append((
                f"build {b['deps']}: defaults / no cache / cold cache / +{b['extra']} warm "
                f"cache / +{b['extra']} on its image",
                f"{b['first_ms'] / 1000:.1f} / "
                f"{b['no_cache_ms'] / 1000:.1f} / {b['cold_ms'] / 1000:.1f} / "
                f"{b['warm_plus_one_ms'] / 1000:.1f} / {b['reuse_plus_one_ms'] / 1000:.1f} s",
            ))  # fmt: skip
    return out


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    pool, cli = (r.get(k, {}).get("p50") for k in ("start_pool_ms", "start_pool_cli_ms"))
    if pool is not None:
        beside = f"; {cli:.1f} ms through the CLI in the same run" if cli else ""
        out.append(("warm pool claim p50 <= 25 ms", f"{pool:.1f} ms ({pool / 25:.2f}x{beside})",
                    pool <= 25))  # fmt: skip
    for key in ("light", "heavy"):
        b = r.get(f"build_{key}")
        if b:
            reuse, cold, none = b["reuse_plus_one_ms"], b["cold_ms"], b["no_cache_ms"]
            out.append((
                f"build {b['deps']}+{b['extra']} on the {b['deps']} image <= 10 s",
                f"{reuse / 1000:.1f} s ({reuse / none:.2f}x the cold build without cache)",
                reuse <= 10_000,
            ))  # fmt: skip
            first = b["first_ms"]
            out.append((
                f"build {b['deps']} first build (defaults) vs pip without cache <= 1.1x",
                f"{first / 1000:.1f} s vs {none / 1000:.1f} s ({first / none:.2f}x)",
                first <= 1.1 * none,
            ))  # fmt: skip
            out.append((
                f"build {b['deps']} cold cache vs pip without cache <= 1.1x",
                f"{cold / 1000:.1f} s vs {none / 1000:.1f} s ({cold / none:.2f}x)",
                cold <= 1.1 * none,
            ))  # fmt: skip
    return out
