"""The host side of checkpoints and forks without Docker: the marker's exact argv,
the Checkpoint value, name checks, and which containers `codeexec stop` removes."""

from __future__ import annotations

import pytest

from codeexec import Checkpoint, InvalidOption
from codeexec._checkpoint import validate_tag
from codeexec._dockerverbs import LABEL_FORK_OF, fork_marker_argv
from codeexec._forking import with_forks
from codeexec.models import SessionInfo, SessionRef


def _info(name: str, cid: str, **labels: str) -> SessionInfo:
    return SessionInfo(
        name=name, container_id=cid, container_name=f"c-{name}", image="img", status="running",
        labels=labels,
    )  # fmt: skip


def test_fork_marker_argv_is_exact() -> None:
    source = SessionRef(info=_info("src", "abc123", **{"codeexec.scope": "s1"}), image_id="sha:1")
    assert fork_marker_argv("Trial_1", source, "f00d") == [
        "create",
        "--name",
        "codeexec-fork-trial_1-f00d",
        "--label",
        "codeexec.managed=1",
        "--label",
        "codeexec.session=Trial_1",
        "--label",
        "codeexec.fork-of=abc123",
        "--label",
        "codeexec.scope=s1",
        "--network",
        "none",
        "--entrypoint",
        "true",
        "sha:1",
    ]


def test_checkpoint_from_the_wire_and_back() -> None:
    c = Checkpoint.from_wire(
        {"name": "a", "created": 5, "files": True, "alive": False, "private_bytes": "x"}
    )
    assert c == Checkpoint(name="a", created=5.0, files=True, alive=False, private_bytes=None)
    assert Checkpoint.from_wire(c.to_dict()) == c


@pytest.mark.parametrize("tag", ["", "-a", "../x", "a b", "x" * 65, "é"])
def test_bad_checkpoint_names_are_refused(tag: str) -> None:
    with pytest.raises(InvalidOption, match="bad checkpoint name"):
        validate_tag(tag)


def test_stop_removes_forks_with_their_source_and_ends_lone_forks() -> None:
    src = _info("src", "c1")
    other = _info("other", "c2")
    fork_of_src = _info("f1", "m1", **{LABEL_FORK_OF: "c1"})
    fork_of_other = _info("f2", "m2", **{LABEL_FORK_OF: "c2"})
    everything = [src, other, fork_of_src, fork_of_other]
    remove, alone = with_forks([src, fork_of_other], everything)
    assert [s.container_id for s in remove] == ["c1", "m1"]
    assert alone == ["f2"]  # its source keeps running: only the branch ends
