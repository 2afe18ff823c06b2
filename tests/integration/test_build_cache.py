"""Image builds share a package cache volume per base image; images never contain it.

The base image is unique to the run (tests/integration/test_uv_build.py), so its
cache volume is too: nothing another run cached can answer for this one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from codeexec.docker import LABEL_CACHE, Docker, cache_volume_name
from codeexec.images import ensure_image
from codeexec.maintenance import gc
from codeexec.models import SessionRef
from tests.integration.test_uv_build import _base_of_this_run

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cached_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A base image of this run and the name of its cache volume (removed afterwards).

    The cache is opt-in (``CODEEXEC_BUILD_CACHE=1``): these tests turn it on.
    """
    mp = pytest.MonkeyPatch()
    mp.setenv("CODEEXEC_BUILD_CACHE", "1")
    try:
        with _base_of_this_run("cache", tmp_path_factory.mktemp("cachebase")) as base:
            volume = cache_volume_name(Docker().image_id(base) or "")
            try:
                yield base, volume
            finally:
                _docker("volume", "rm", volume)
    finally:
        mp.undo()


def _build(base: str, deps: list[str]) -> tuple[str, str]:
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        # From the base each time: on the first image, pip would download nothing.
        mp.setenv("CODEEXEC_BUILD_REUSE", "0")
        tag = ensure_image(Docker(), base_image=base, dependencies=deps, on_line=lines.append)
    return tag, "\n".join(lines)


@pytest.fixture(scope="module")
def two_builds(cached_base: tuple[str, str]) -> Iterator[tuple[str, str, str, str]]:
    """Two images on the cached base: ``six``, then ``six`` plus a second requirement."""
    base, _ = cached_base
    first, first_log = _build(base, ["six"])
    try:
        second, second_log = _build(base, ["six", "six>=1.0"])
        try:
            yield first, first_log, second, second_log
        finally:
            _docker("rmi", "-f", second)
    finally:
        _docker("rmi", "-f", first)


def test_a_second_build_takes_the_shared_package_from_the_cache(
    cached_base: tuple[str, str], two_builds: tuple[str, str, str, str]
) -> None:
    _, volume = cached_base
    _, first_log, _, second_log = two_builds
    assert "using the package cache /opt/codeexec/cache/pip-wheels" in first_log
    assert "Downloading six" in first_log, first_log[-2000:]
    # pip takes the wheel from the cache; nothing is downloaded again.
    assert "File was already downloaded /opt/codeexec/cache/pip-wheels/six-" in second_log, (
        second_log[-2000:]
    )
    assert "Downloading six" not in second_log
    labels = json.loads(_docker("volume", "inspect", "--format", "{{json .Labels}}", volume).stdout)
    assert labels == {LABEL_CACHE: "1", "codeexec.base": cached_base[0]}


def test_the_committed_image_holds_none_of_the_cache(two_builds: tuple[str, str, str, str]) -> None:
    for image in (two_builds[0], two_builds[2]):
        config = json.loads(
            _docker("image", "inspect", "--format", "{{json .Config}}", image).stdout
        )
        assert not config.get("Volumes")
        listing = _docker("run", "--rm", "--entrypoint", "ls", image, "-A", "/opt/codeexec/cache")
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.strip() == ""


class _OnlyThisCache(Docker):
    """The real engine, with gc's view narrowed to one volume (other runs share the engine)."""

    def __init__(self, volume: str) -> None:
        super().__init__()
        self.volume = volume

    def ps_inspect(self, labels: Mapping[str, str], *, all: bool = True) -> list[SessionRef]:
        return []

    def images(self, labels: Mapping[str, str]) -> list[Any]:
        return []

    def volumes(self, label: str) -> list[str]:
        return [v for v in super().volumes(label) if v == self.volume]


def test_gc_all_images_removes_the_cache_volume(
    cached_base: tuple[str, str], two_builds: tuple[str, str, str, str], tmp_path: Path
) -> None:
    _, volume = cached_base
    assert gc(dry_run=True, all_images=True, docker=_OnlyThisCache(volume)).volumes == (volume,)
    assert gc(dry_run=True, docker=_OnlyThisCache(volume)).volumes == ()
    assert _docker("volume", "inspect", volume).returncode == 0
    report = gc(all_images=True, docker=_OnlyThisCache(volume))
    assert report.volumes == (volume,) and not report.failed
    assert _docker("volume", "inspect", volume).returncode != 0
