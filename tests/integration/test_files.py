"""Files (issue 15), against the real engine: transfers of any size in chunks with
bounded memory, whole directories up and down, listing and removing remote files,
``download`` into a directory that does not exist yet; the library, `codeexec cp -r`,
`codeexec files` and the MCP ``list_files``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeexec import ContainerSession, DirTransfer, FileInfo, FileTransferError
from tests.conftest import RUN_ID

pytestmark = pytest.mark.docker

MiB = 2**20


@pytest.fixture(scope="module")
def session(docker_engine: None) -> Iterator[ContainerSession]:
    with ContainerSession.start(f"m{RUN_ID}-files") as s:
        yield s


def codeexec(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codeexec", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


# The transfer runs in a fresh process that reports its own peak RSS (VmHWM), as
# tests/integration/test_trust_bounds.py does for results.
_BIG_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from codeexec import ContainerSession

    def kib(field):
        for line in open('/proc/self/status'):
            if line.startswith(field + ':'):
                return int(line.split()[1])

    s = ContainerSession.attach(sys.argv[1])
    s.ping()
    Path('/proc/self/clear_refs').write_text('5')
    before = kib('VmRSS')
    up = s.upload(sys.argv[2], 'big.bin')
    back = s.download('big.bin', sys.argv[3])
    print(json.dumps({"before": before, "peak": kib('VmHWM'), "up": up,
                      "back": back.stat().st_size}))
    s.close()
    """
)


def test_100_mb_up_and_down_with_bounded_memory(session: ContainerSession, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for i in range(100):
            f.write(hashlib.sha256(str(i).encode()).digest() * (MiB // 32))
    out = tmp_path / "back" / "big.bin"
    done = subprocess.run(
        [sys.executable, "-c", _BIG_CHILD, session.name, str(big), str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["up"] == report["back"] == 100 * MiB
    growth = (report["peak"] - report["before"]) / 1024
    print(f"\n100 MiB up and down: RSS {report['before'] / 1024:.0f} MiB, peak +{growth:.0f} MiB")
    assert growth < 24, f"the host grew by {growth:.0f} MiB moving 100 MiB"
    assert _sha(out) == _sha(big)
    remote = session.run(["sha256sum", "big.bin"]).stdout.split()[0]
    assert remote == _sha(big)
    session.files.remove("big.bin")


def test_write_and_read_past_the_old_32_mib_ceiling(session: ContainerSession) -> None:
    data = os.urandom(1000) * 40_000  # 40 MB
    assert session.write_file("w.bin", data) == len(data)
    with pytest.raises(FileTransferError) as info:
        session.read_file("w.bin")  # the default cap guards memory: the bytes come at once
    assert info.value.code == "too_large"
    assert session.read_file("w.bin", max_bytes=64 * MiB) == data
    assert session.write_file("empty", b"") == 0 and session.read_file("empty") == b""
    session.files.remove("w.bin")


def test_download_into_a_directory_that_does_not_exist(
    session: ContainerSession, tmp_path: Path
) -> None:
    session.write_file("r.txt", b"result")
    target = session.download("r.txt", f"{tmp_path}/results/")
    assert target == tmp_path / "results" / "r.txt" and target.read_bytes() == b"result"
    assert session.download("r.txt", tmp_path / "results") == tmp_path / "results" / "r.txt"
    named = session.download("r.txt", tmp_path / "renamed.txt")
    assert named.read_bytes() == b"result"
    with pytest.raises(FileTransferError, match="no such file"):
        session.download("missing.txt", tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_files_list_and_remove(session: ContainerSession) -> None:
    session.run("mkdir -p t/sub && echo abc > t/a.txt && echo b > t/sub/b && ln -s /etc t/link")
    listed = session.files.list("t")
    assert [(f.name, f.kind) for f in listed] == [
        ("a.txt", "file"), ("link", "symlink"), ("sub", "directory"),
    ]  # fmt: skip
    assert isinstance(listed[0], FileInfo) and listed[0].size == 4
    assert listed[0].path == "t/a.txt"
    deep = session.files.list("t", recursive=True)
    assert [f.path for f in deep] == ["t/a.txt", "t/link", "t/sub", "t/sub/b"]
    assert session.files.list("t/a.txt")[0].kind == "file"
    with pytest.raises(FileTransferError, match="not empty") as info:
        session.files.remove("t")
    assert info.value.code == "io_error"
    session.files.remove("t/link")  # the link, not /etc
    assert session.run(["test", "-d", "/etc"]).ok
    session.files.remove("t", recursive=True)
    with pytest.raises(FileTransferError) as gone:
        session.files.list("t")
    assert gone.value.code == "not_found"
    with pytest.raises(FileTransferError, match="working directory"):
        session.files.remove(".", recursive=True)


def test_upload_dir_and_download_dir(session: ContainerSession, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "top.txt").write_text("top")
    (src / "a" / "b" / "deep.bin").write_bytes(os.urandom(5 * MiB))
    (src / "a" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (src / "a" / "run.sh").chmod(0o755)
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    (src / "leak").symlink_to(secret)
    sent = session.upload_dir(src, "proj")
    assert isinstance(sent, DirTransfer)
    assert (sent.files, sent.directories, sent.skipped) == (3, 3, ("leak",))
    assert session.run(["sh", "proj/a/run.sh"]).stdout == "ran\n"
    assert session.run(["test", "-x", "proj/a/run.sh"]).ok
    assert not session.run(["test", "-e", "proj/leak"]).ok
    session.run("ln -s /etc/passwd proj/link && mkfifo proj/fifo")
    dst = tmp_path / "dst"
    got = session.download_dir("proj", dst)
    assert (got.files, got.directories) == (3, 3) and set(got.skipped) == {"fifo", "link"}
    assert got.bytes == sent.bytes
    assert (dst / "top.txt").read_text() == "top" and (dst / "empty").is_dir()
    assert _sha(dst / "a" / "b" / "deep.bin") == _sha(src / "a" / "b" / "deep.bin")
    assert not (dst / "link").exists() and not (dst / "fifo").exists()
    with pytest.raises(FileTransferError, match="not a directory"):
        session.download_dir("proj/top.txt", tmp_path / "x")
    with pytest.raises(FileTransferError, match="not a directory"):
        session.upload_dir(src / "top.txt", "x")
    session.files.remove("proj", recursive=True)


def test_download_dir_never_writes_through_a_host_symlink(
    session: ContainerSession, tmp_path: Path
) -> None:
    session.run("mkdir -p esc/sub && echo pwned > esc/sub/f")
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "sub").symlink_to(outside)  # planted on the host
    got = session.download_dir("esc", dst)
    assert "sub/f" in got.skipped
    assert not (outside / "f").exists()
    session.files.remove("esc", recursive=True)


def test_cli_cp_recursive_and_files_commands(session: ContainerSession, tmp_path: Path) -> None:
    src = tmp_path / "data"
    (src / "in").mkdir(parents=True)
    (src / "in" / "x.txt").write_text("x")
    up = codeexec("cp", "-r", str(src), f"{session.name}:cli/")
    assert up.returncode == 0, up.stderr
    assert session.run(["cat", "cli/data/in/x.txt"]).stdout == "x"
    ls = codeexec("files", "ls", session.name, "cli/data", "-r", "--json")
    assert ls.returncode == 0, ls.stderr
    assert [e["path"] for e in json.loads(ls.stdout)] == ["cli/data/in", "cli/data/in/x.txt"]
    plain = codeexec("files", "ls", session.name, "cli/data/in")
    assert plain.returncode == 0 and "x.txt" in plain.stdout
    down = codeexec("cp", "-r", f"{session.name}:cli/data", str(tmp_path / "back"))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "back" / "in" / "x.txt").read_text() == "x"
    into = codeexec("cp", "-r", f"{session.name}:cli/data", f"{tmp_path / 'into'}/")
    assert into.returncode == 0 and (tmp_path / "into" / "data" / "in" / "x.txt").exists()
    refused = codeexec("files", "rm", session.name, "cli")
    assert refused.returncode == 3 and "not empty" in refused.stderr
    removed = codeexec("files", "rm", "-r", session.name, "cli")
    assert removed.returncode == 0, removed.stderr
    assert codeexec("files", "ls", session.name, "cli").returncode == 3
    no_r = codeexec("cp", str(src), f"{session.name}:x")
    assert no_r.returncode != 0 and "-r" in no_r.stderr


def test_mcp_list_files(docker_engine: None) -> None:
    import anyio
    from mcp import Client

    from codeexec.mcp_server import build_server
    from codeexec.registry import SessionRegistry
    from tests.conftest import unique_name

    name = unique_name()
    registry = SessionRegistry(default_name=name)

    async def calls() -> None:
        async with Client(build_server(registry)) as client:
            await client.call_tool("write_file", {"path": "d/f.txt", "content": "hello"})
            listed = await client.call_tool("list_files", {"path": "d"})
            assert not listed.is_error, listed
            assert listed.structured_content is not None
            (entry,) = listed.structured_content["files"]
            assert (entry["path"], entry["kind"], entry["size"]) == ("d/f.txt", "file", 5)
            missing = await client.call_tool("list_files", {"path": "nope"})
            assert missing.is_error

    try:
        anyio.run(calls)
    finally:
        entry = registry.known(name)
        if entry is not None and entry.session is not None:
            entry.session.close()
        registry.close()
