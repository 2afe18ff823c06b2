"""Shell commands and file transfers (issue 15): ``session.run`` beside ``docker
exec`` (what it replaces), and 100 MiB up and down in chunks, with the host's peak.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from codeexec import ContainerSession

from . import _util as u

MiB = 2**20
ROWS = (
    ("run_true_ms", "session.run(['true']) (the executor spawns it)"),
    ("run_sh_ms", "session.run('echo hi') (through sh -c)"),
)


def measure(session_name: str, n: int, size_mib: int = 100) -> dict[str, Any]:
    session = ContainerSession.attach(session_name)
    try:
        out: dict[str, Any] = {
            "run_true_ms": u.summary(u.timed(lambda: session.run(["true"]), n)),
            "run_sh_ms": u.summary(u.timed(lambda: session.run("echo hi"), n)),
        }
        with tempfile.TemporaryDirectory() as tmp:
            big = Path(tmp) / "big.bin"
            with big.open("wb") as f:
                for _ in range(size_mib):
                    f.write(os.urandom(MiB))
            started = time.perf_counter()
            session.upload(big, "bench-big.bin")
            up = time.perf_counter() - started
            started = time.perf_counter()
            session.download("bench-big.bin", Path(tmp) / "back.bin")
            down = time.perf_counter() - started
            session.files.remove("bench-big.bin")
        out["transfer"] = {"mib": size_mib, "up_mb_s": size_mib * MiB / up / 1e6,
                           "down_mb_s": size_mib * MiB / down / 1e6}  # fmt: skip
        return out
    finally:
        session.close()


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    out = [
        (label, f"p50 {r[key]['p50']:.3f} ms   p99 {r[key]['p99']:.3f} ms   (n={r[key]['n']})")
        for key, label in ROWS
        if key in r
    ]
    t = r.get("transfer")
    if t:
        out.append((f"upload / download {t['mib']} MiB (1 MiB chunks)",
                    f"{t['up_mb_s']:.0f} MB/s up, {t['down_mb_s']:.0f} MB/s down"))  # fmt: skip
    return out


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """session.run against docker exec, the round trip it replaces."""
    if "run_true_ms" not in r or "docker_exec_ms" not in r:
        return []
    ratio = r["run_true_ms"]["p50"] / r["docker_exec_ms"]["p50"]
    return [("session.run(['true']) / docker exec python3 -c pass <= 0.5", f"{ratio:.2f}x",
             ratio <= 0.5)]  # fmt: skip
