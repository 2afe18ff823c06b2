"""Whole-session snapshots (issue 13, tier 2): take and resume at 100 MB and 1 GB.

For each method, a session holding that much incompressible data (a list of 1 MiB
``bytes`` objects from ``os.urandom``) is snapshotted, then resumed into a new
session, which is checked to hold the data. The checkpoint method runs on gVisor
(runtime ``runsc-ckpt``); its ``snapshot`` time includes restoring the source into
its new container (the engine stops a checkpointed gVisor container), shown apart.
E2B's published figures stand beside them: about 4 s per GiB to pause, 1 s to resume.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from codeexec import ContainerSession, Limits
from codeexec.snapshot import remove

SIZES_MB = (100, 1024)
E2B = "E2B (published): pause ~4 s/GiB, resume ~1 s"


def _one(method: str, mb: int, prefix: str, log: Callable[[str], None]) -> dict[str, Any]:
    runtime = {"runtime": "runsc-ckpt", "network": "none"} if method == "checkpoint" else {}
    name = f"{prefix}-snap-{method[:4]}-{mb}"
    memory = f"{max(1, (mb * 4) // 1024 + 1)}g"
    limits = Limits(memory=memory, tmp_size=f"{mb * 2 + 256}m")
    with ContainerSession.start(name, limits=limits, idle_timeout=900, **runtime) as source:  # type: ignore[arg-type]
        done = source.execute(
            f"import os\nblob = [os.urandom(2**20) for _ in range({mb})]\nlen(blob)", timeout=600
        )
        assert done.value == str(mb), done
        log(f"snapshots: {method} {mb} MB: snapshot")
        t = time.perf_counter()
        snap = source.snapshot(f"{name}-s", method=method)
        total = time.perf_counter() - t
    t = time.perf_counter()
    copy = ContainerSession.resume(snap, f"{name}-r")
    resume = time.perf_counter() - t
    try:
        check = copy.execute("sum(len(b) for b in blob)", timeout=600).value
        assert check == str(mb * 2**20), check
    finally:
        copy.stop()
        remove(snap.name)
    return {
        "method": method, "mb": mb, "snapshot_s": total, "checkpoint_s": snap.seconds,
        "resume_s": resume, "size_mib": snap.size / 2**20,
    }  # fmt: skip


def measure(prefix: str, log: Callable[[str], None], quick: bool = False) -> list[dict[str, Any]]:
    own = tempfile.mkdtemp(prefix="codeexec-bench-")  # the user's snapshots stay apart
    before = os.environ.get("CODEEXEC_SNAPSHOT_DIR")
    os.environ["CODEEXEC_SNAPSHOT_DIR"] = own
    out = []
    try:
        for method in ("checkpoint", "portable"):
            for mb in SIZES_MB[:1] if quick else SIZES_MB:
                try:
                    out.append(_one(method, mb, prefix, log))
                except Exception as exc:  # noqa: BLE001 - a row says what failed
                    out.append({"method": method, "mb": mb, "error": str(exc)[:200]})
    finally:
        shutil.rmtree(own, ignore_errors=True)
        if before is None:
            os.environ.pop("CODEEXEC_SNAPSHOT_DIR", None)
        else:
            os.environ["CODEEXEC_SNAPSHOT_DIR"] = before
    return out


def rows(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    lines = []
    for r in results:
        label = f"snapshot {r['method']}, {r['mb']} MB of objects"
        if "error" in r:
            lines.append((label, f"failed: {r['error']}"))
            continue
        inside = (
            f" (checkpoint {r['checkpoint_s']:.2f} s + source resumed)"
            if r["method"] == "checkpoint"
            else ""
        )
        took = f"snapshot {r['snapshot_s']:.2f} s{inside}, resume {r['resume_s']:.2f} s"
        lines.append((label, f"{took}, {r['size_mib']:.0f} MiB on disk"))
    return [*lines, ("  beside it", E2B)] if lines else []
