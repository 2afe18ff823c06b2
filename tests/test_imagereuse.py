"""_imagereuse: which env image a new dependency set is installed on top of."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from codeexec._imagereuse import (
    LABEL_STAGE,
    MAX_LAYERS,
    Parent,
    built_here,
    commit_message,
    env_labels,
    label_changes,
    rank_parents,
    reuse_enabled,
)
from codeexec.docker import Docker
from codeexec.errors import ImageBuildError
from codeexec.images import ImageLookup, IndexSettings, build_image, make_context
from tests.test_images import (
    FAKE,
    _argvs,
    fake_build as fake_build,  # the fixture
)

BASE_ID = "sha256:" + "b" * 64
BASE_LAYERS = ["sha256:l1", "sha256:l2"]
STAGE = "c" * 64
WANTED = ("idna", "packaging", "six")


def _base() -> dict[str, Any]:
    return {"Id": BASE_ID, "RootFS": {"Layers": BASE_LAYERS}}


def _env(
    image_id: str,
    deps: list[str],
    *,
    layers: list[str] | None = None,
    created: str = "2026-11-28T10:00:00Z",
    **label_overrides: str,
) -> dict[str, Any]:
    labels = env_labels(deps, "base:1", BASE_ID, STAGE)
    labels.update(label_overrides)
    return {
        "Id": image_id,
        "Created": created,
        "Config": {"Labels": labels},
        "RootFS": {"Layers": layers if layers is not None else [*BASE_LAYERS, "sha256:s", "x"]},
    }


def _pick(*candidates: dict[str, Any], base: dict[str, Any] | None = None) -> Parent | None:
    ranked = rank_parents(
        WANTED, stage=STAGE, base_id=BASE_ID, base=base or _base(), candidates=candidates
    )
    return ranked[0] if ranked else None


def test_the_strict_subset_with_the_most_packages_is_picked() -> None:
    one, two = _env("sha256:1", ["six"]), _env("sha256:2", ["packaging", "six"])
    assert _pick(one, two) == Parent("sha256:2", ("packaging", "six"))
    assert _pick(two, one) == Parent("sha256:2", ("packaging", "six"))
    # The image with no dependencies comes from `docker build`, with no install commit.
    assert _pick(_env("sha256:0", [])) is None


def test_the_same_set_or_one_with_other_packages_is_no_parent() -> None:
    assert _pick(_env("sha256:1", list(WANTED))) is None  # not strict: that is the image itself
    assert _pick(_env("sha256:1", ["six", "numpy"])) is None  # numpy is not wanted
    assert _pick(_env("sha256:1", ["six>=1"])) is None  # requirements compare as written
    assert rank_parents((), stage=STAGE, base_id=BASE_ID, base=_base(),
                        candidates=[_env("sha256:0", [])]) == []  # fmt: skip


def test_ties_go_to_the_newest_then_the_smallest_id() -> None:
    old = _env("sha256:1", ["six"], created="2026-11-28T09:00:00Z")
    new = _env("sha256:2", ["idna"], created="2026-11-28T11:00:00Z")
    assert _pick(old, new) == Parent("sha256:2", ("idna",))
    a, b = _env("sha256:a", ["six"]), _env("sha256:b", ["idna"])
    assert _pick(b, a) == _pick(a, b) == Parent("sha256:a", ("six",))


@pytest.mark.parametrize(
    "labels",
    [
        {LABEL_STAGE: "d" * 64},  # another executor, install script, CA bundle or index
        {"codeexec.base-id": "sha256:" + "e" * 64},  # another base image
        {"codeexec.image": "0"},
        {"codeexec.deps": "not json"},
        {"codeexec.deps": '{"six": 1}'},
        {"codeexec.deps": "[1]"},
        {"codeexec.managed": "1"},  # a committed session container, not an env image
        {"codeexec.session": "s"},
        {"codeexec.pool": "1"},
    ],
)
def test_only_env_images_of_this_stage_and_base_id_are_candidates(labels: dict[str, str]) -> None:
    assert _pick(_env("sha256:1", ["six"])) is not None
    assert _pick(_env("sha256:1", ["six"], **labels)) is None


def test_the_layers_decide_the_base_not_the_labels() -> None:
    # Labels copied onto an image of another base: its layers do not start with ours.
    forged = _env("sha256:1", ["six"], layers=["sha256:other", "sha256:l2", "sha256:s"])
    assert _pick(forged) is None
    # The base image itself, or a prefix of it, holds no trusted stage.
    assert _pick(_env("sha256:1", ["six"], layers=list(BASE_LAYERS))) is None
    # The base named in the lookup must be the image inspected under that id.
    other_base = {"Id": "sha256:" + "f" * 64, "RootFS": {"Layers": BASE_LAYERS}}
    assert _pick(_env("sha256:1", ["six"]), base=other_base) is None
    assert _pick(_env("sha256:1", ["six"]), base={"Id": BASE_ID}) is None
    assert rank_parents(WANTED, stage=STAGE, base_id="", base=_base(),
                        candidates=[_env("sha256:1", ["six"])]) == []  # fmt: skip


def test_candidates_are_ranked_best_first() -> None:
    one, two = _env("sha256:1", ["six"]), _env("sha256:2", ["packaging", "six"])
    ranked = rank_parents(WANTED, stage=STAGE, base_id=BASE_ID, base=_base(),
                          candidates=[one, two])  # fmt: skip
    assert [p.image_id for p in ranked] == ["sha256:2", "sha256:1"]


def _history(*ids: str, comment: str = commit_message(STAGE)) -> list[dict[str, str]]:
    return [{"ID": ids[0], "Comment": comment}, *({"ID": i, "Comment": ""} for i in ids[1:])]


def test_the_history_shows_codeexecs_install_on_top_and_the_base_below() -> None:
    assert built_here(_history("sha256:1", "<missing>", BASE_ID), base_id=BASE_ID, stage=STAGE)
    # Podman prints ids without the algorithm.
    assert built_here(_history("1", BASE_ID.removeprefix("sha256:")), base_id=BASE_ID, stage=STAGE)
    # An image someone built FROM an env image: its newest layer is theirs.
    derived = [{"ID": "sha256:9", "Comment": ""}, *_history("sha256:1", BASE_ID)]
    assert not built_here(derived, base_id=BASE_ID, stage=STAGE)
    # Another base image with the same files: its id is not in the chain.
    assert not built_here(_history("sha256:1", "sha256:other"), base_id=BASE_ID, stage=STAGE)
    assert not built_here(_history("sha256:1", BASE_ID, comment=commit_message("d" * 64)),
                          base_id=BASE_ID, stage=STAGE)  # fmt: skip
    assert not built_here([], base_id=BASE_ID, stage=STAGE)


def test_a_chain_of_images_too_deep_for_the_engine_starts_again() -> None:
    deep = [*BASE_LAYERS, *(f"sha256:{i}" for i in range(MAX_LAYERS - len(BASE_LAYERS)))]
    assert _pick(_env("sha256:1", ["six"], layers=deep[:-1])) is not None
    assert _pick(_env("sha256:1", ["six"], layers=deep)) is None


def test_the_stage_key_follows_everything_but_the_requirements(tmp_path: Path) -> None:
    a = make_context("base:1", ("six",), IndexSettings(), "sha256:1")
    assert make_context("base:1", ("six", "idna"), IndexSettings(), "sha256:1").stage == a.stage
    assert make_context("base:1", ("six",), IndexSettings(), "sha256:2").stage != a.stage
    assert make_context("base:2", ("six",), IndexSettings(), "sha256:1").stage != a.stage
    other_index = IndexSettings(index_url="https://x/simple")
    assert make_context("base:1", ("six",), other_index, "sha256:1").stage != a.stage
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nQUFB\n-----END CERTIFICATE-----\n")
    with_ca = IndexSettings(ca_bundle=bundle)
    assert make_context("base:1", ("six",), with_ca, "sha256:1").stage != a.stage
    assert len(a.stage) == 64 and a.stage != a.digest


def test_label_changes_quote_requirements_with_quotes_and_spaces() -> None:
    deps = ['tomli; python_version < "3.11"', "six"]
    changes = label_changes(env_labels(deps, "b", "i", "s"))
    (line,) = [c for c in changes if c.startswith("LABEL codeexec.deps=")]
    # One double-quoted word (backslash escapes), as the Dockerfile parser reads it;
    # tests/integration/test_build_reuse.py reads the labels back from the engine.
    word = line.removeprefix("LABEL codeexec.deps=")
    assert word.startswith('"') and word.endswith('"')
    assert json.loads(json.loads(word)) == deps


def test_reuse_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEEXEC_BUILD_REUSE", raising=False)
    assert reuse_enabled()
    for off in ("0", "false", "NO"):
        monkeypatch.setenv("CODEEXEC_BUILD_REUSE", off)
        assert not reuse_enabled()


# -- build_image on the fake docker CLI ----------------------------------------------

PARENT = "sha256:" + "9" * 64


@pytest.fixture
def reuse(fake_build: Path, monkeypatch: pytest.MonkeyPatch) -> ImageLookup:
    """A lookup for six+idna, with the engine holding the env image of six."""
    context = make_context("base:1", ("idna", "six"), IndexSettings(), BASE_ID)
    parent = _env(PARENT, ["six"], layers=[*BASE_LAYERS, "sha256:s", "sha256:six"])
    parent["Config"]["Labels"][LABEL_STAGE] = context.stage
    parent["Config"].update({"User": "10001:10001", "WorkingDir": "/workspace", "Cmd": ["x"]})
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_IMAGES", PARENT + "\n")
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_IMAGE", json.dumps([parent, _base()]))
    history = _history(PARENT, "<missing>", BASE_ID, comment=commit_message(context.stage))
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_HISTORY", "".join(json.dumps(r) + "\n" for r in history))
    monkeypatch.setenv("CODEEXEC_BUILD_CACHE", "0")
    return ImageLookup("base:1", ("idna", "six"), context, exists=False, base_id=BASE_ID)


def test_a_superset_installs_on_the_closest_image_and_commits_its_own_labels(
    reuse: ImageLookup, fake_build: Path
) -> None:
    lines: list[str] = []
    assert build_image(Docker(FAKE), reuse, on_line=lines.append) == reuse.tag
    calls = [json.loads(line) for line in fake_build.read_text().splitlines()]
    images, inspect, history, run, _, commit, rm = (c["argv"] for c in calls)
    assert images == ["images", "--quiet", "--no-trunc", "--filter", "label=codeexec.image=1",
                      "--filter", f"label=codeexec.stage={reuse.context.stage}"]  # fmt: skip
    assert inspect == ["image", "inspect", BASE_ID, PARENT]
    assert history == ["history", "--no-trunc", "--format", "{{json .}}", PARENT]
    # No docker build: the install runs on the parent, by id, with the whole set.
    assert run[-3:] == [PARENT, "sh", "/opt/codeexec/build/install.sh"]
    assert run[run.index("--user") + 1] == "10002:10002"
    assert calls[3]["stdin"].endswith("REQUIREMENT=idna\nREQUIREMENT=six\n")
    assert commit[-2:] == [run[run.index("--name") + 1], reuse.tag]
    assert commit[commit.index("--message") + 1] == commit_message(reuse.context.stage)
    changes = [commit[i + 1] for i, a in enumerate(commit) if a == "--change"]
    assert changes[:3] == ["USER 10001:10001", "WORKDIR /workspace", 'CMD ["x"]']
    assert 'LABEL codeexec.deps="[\\"idna\\", \\"six\\"]"' in changes
    assert f'LABEL codeexec.stage="{reuse.context.stage}"' in changes
    assert f'LABEL codeexec.base-id="{BASE_ID}"' in changes
    assert rm[:2] == ["rm", "--force"]
    assert any(line.endswith(f"on {PARENT[:19]} (holding 1)") for line in lines)


def test_a_failed_install_on_a_parent_removes_the_container_never_the_parent(
    reuse: ImageLookup, fake_build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "run")
    with pytest.raises(ImageBuildError):
        build_image(Docker(FAKE), reuse)
    verbs = [a[0] for a in _argvs(fake_build)]
    assert verbs == ["images", "image", "history", "run", "rm"]


def test_turned_off_reuse_builds_the_trusted_stage(
    reuse: ImageLookup, fake_build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEEXEC_BUILD_REUSE", "0")
    build_image(Docker(FAKE), reuse)
    assert [a[0] for a in _argvs(fake_build)] == ["build", "run", "image", "commit", "rm"]


def test_an_image_whose_history_is_not_codeexecs_is_not_built_on(
    reuse: ImageLookup, fake_build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    derived = [{"ID": PARENT, "Comment": ""}, {"ID": BASE_ID, "Comment": ""}]
    monkeypatch.setenv("FAKE_DOCKER_STDOUT_HISTORY", "".join(json.dumps(r) + "\n" for r in derived))
    build_image(Docker(FAKE), reuse)
    verbs = [a[0] for a in _argvs(fake_build)]
    assert verbs == ["images", "image", "history", "build", "run", "image", "commit", "rm"]


def test_a_failed_lookup_falls_back_to_the_trusted_stage(
    reuse: ImageLookup, fake_build: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "images")  # e.g. gc removed one in between
    build_image(Docker(FAKE), reuse)
    assert [a[0] for a in _argvs(fake_build)] == ["images", "build", "run", "image", "commit", "rm"]


def test_podman_builds_from_the_base_and_commits_without_a_message(
    reuse: ImageLookup, fake_build: Path, tmp_path: Path
) -> None:
    # podman refuses `commit --message` in its default (OCI) image format.
    podman = tmp_path / "podman"
    shutil.copy(FAKE, podman)
    podman.chmod(0o755)
    assert Docker(str(podman)).flavour == "podman"
    build_image(Docker(str(podman)), reuse)
    argvs = _argvs(fake_build)
    assert [a[0] for a in argvs] == ["build", "run", "image", "commit", "rm"]
    assert "--message" not in argvs[3]
