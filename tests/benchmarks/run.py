"""codeexec benchmarks: every number and ratio measured side by side in one run.

    make bench            # or: .venv/bin/python -m tests.benchmarks.run [--quick] [--json PATH]

Prints a table and writes ``.bench/results.json`` (plus ``--json PATH``). Nothing
here is a pass/fail test: targets are reported as met or missed. See
docs/performance.md for what limits each number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("CODEEXEC_BASE_IMAGE", "codeexec-base:bookworm")

from codeexec import (  # noqa: E402
    ContainerSession,
    images,
    pool as pool_mod,  # noqa: E402
)
from codeexec.client import ExecutorClient  # noqa: E402
from codeexec.docker import Docker, RunSpec, run_argv  # noqa: E402
from codeexec.errors import ConnectionLost  # noqa: E402

from . import (  # noqa: E402
    _build,
    _checkpoints,
    _cli,
    _mcp,
    _relay,
    _rt,
    _runtimes,
    _scale,
    _shfiles,
    _snap,
    _util as u,  # noqa: E402
)

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
IDLE = 900.0  # idle timeout of every benchmark session: a crashed run cleans itself up
TINY = json.dumps({"op": "exec", "id": "c1", "code": "pass", "timeout": None}).encode()
TINY_FRAME = struct.pack(">I", len(TINY)) + TINY


def log(msg: str) -> None:
    print(f"  … {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.n_fast = 100 if quick else 400
        self.n_slow = 5 if quick else 10
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []
        self.docker = Docker()
        self.env_image = ""
        self.echo = ""

    def name(self, what: str) -> str:
        return f"{u.PREFIX}-{what}"

    # -- 1, 2: the floor and docker exec -------------------------------------------
    def floor(self) -> None:
        log("floor: echo server in a container")
        self.echo = u.docker(
            "run",
            "-d",
            "--rm",
            "--name",
            self.name("echo"),
            "--label",
            u.BENCH_LABEL,
            "-p",
            "127.0.0.1::9000",
            os.environ["CODEEXEC_BASE_IMAGE"],
            "python3",
            "-c",
            u.ECHO_SERVER,
        )
        port = u.host_port(self.echo, 9000)
        self.echo_sock = u.connect_echo(port, TINY_FRAME, time.monotonic() + 30)
        sock = self.echo_sock
        samples = u.timed(lambda: u.echo_round_trip(sock, TINY_FRAME), self.n_fast * 2, warmup=50)
        self.results["floor_ms"] = u.summary(samples)

    def docker_exec(self) -> None:
        log("docker exec python3 -c pass")
        samples = u.timed(
            lambda: u.docker("exec", self.echo, "python3", "-c", "pass"), self.n_slow, warmup=1
        )
        self.results["docker_exec_ms"] = u.summary(samples)

    # -- 3: the library --------------------------------------------------------------
    def library(self) -> None:
        log("library execute round trips")
        session = ContainerSession.start(self.name("lib"), idle_timeout=IDLE)
        self.lib = session
        # The floor and execute('pass') alternate, sample by sample, so that the
        # target's ratio compares the same moments of this noisy 2-core VM.
        sock = getattr(self, "echo_sock", None)
        floor: list[float] = []
        lib: list[float] = []
        for _ in range(20):
            if sock is not None:
                u.echo_round_trip(sock, TINY_FRAME)
            session.execute("pass")
        for _ in range(self.n_fast):
            if sock is not None:
                floor += u.timed(lambda: u.echo_round_trip(sock, TINY_FRAME), 1)
            lib += u.timed(lambda: session.execute("pass"), 1)
        if sock is not None:
            sock.close()
            self.results["floor_ms"] = u.summary(floor)
        self.results["lib_pass_ms"] = u.summary(lib)
        session.execute("x = 0")
        self.results["lib_incr_ms"] = u.summary(
            u.timed(lambda: session.execute("x += 1"), self.n_fast, warmup=20)
        )
        # The same exec frames over a bare client: how much the session layer adds.
        client = session._channel_client()
        self.results["client_pass_ms"] = u.summary(
            u.timed(lambda: client.execute("pass"), self.n_fast, warmup=20)
        )

    # -- 4: the CLI and the MCP server -----------------------------------------------
    def cli(self) -> None:
        exe = VENV_BIN / "codeexec"
        probe = (
            subprocess.run([str(exe), "exec", "--help"], capture_output=True, text=True, timeout=60)
            if exe.exists()
            else None
        )
        if probe is None or probe.returncode != 0:
            self.notes.append("CLI: `codeexec exec` not available yet; skipped")
            return
        log("codeexec exec (whole process)")
        # An installed wheel has bytecode (pip compiles on install); an editable
        # checkout under PYTHONDONTWRITEBYTECODE=1 would recompile every run.
        import compileall

        compileall.compile_dir(str(ROOT / "codeexec"), quiet=1)
        rounds = max(self.n_slow, 20)
        self.results.update(_cli.exec_vs_docker(exe, self.lib.name, self.echo, rounds))
        self.results.update(_cli.ls_many(exe, self.name, IDLE, self.n_slow))

    def mcp(self) -> None:
        exe = VENV_BIN / "codeexec"
        try:
            import importlib.util

            has_module = importlib.util.find_spec("codeexec.mcp_server") is not None
        except ImportError:
            has_module = False
        if not has_module:
            self.notes.append("MCP: codeexec.mcp_server not available yet; skipped")
            return
        log("MCP tool calls over stdio")
        command = (
            [str(exe), "mcp"] if exe.exists() else [sys.executable, "-m", "codeexec.mcp_server"]
        )
        try:
            self.results.update(asyncio.run(self._mcp(command)))
            log("MCP initialize and per-call overhead over stdio and HTTP (raw JSON-RPC)")
            self.results.update(_mcp.initialize(self.name("mcpinit")))
            self.results.update(_mcp.per_call(self.lib, self.n_fast // 2, self.name("mcpraw")))
        except Exception as exc:  # noqa: BLE001 - report, never abort the run
            self.notes.append(f"MCP: failed ({type(exc).__name__}: {exc}); skipped")

    async def _mcp(self, command: list[str]) -> dict[str, Any]:
        from mcp.client.session import ClientSession
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(
            command=command[0],
            args=command[1:],
            env={"CODEEXEC_BASE_IMAGE": os.environ["CODEEXEC_BASE_IMAGE"]},
        )
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as mcp:
                    await mcp.initialize()
                    tools = {t.name: t for t in (await mcp.list_tools()).tools}

                    def args(tool: str, **given: Any) -> dict[str, Any]:
                        tool_def = tools[tool]
                        schema = (
                            getattr(tool_def, "input_schema", None)
                            or getattr(tool_def, "inputSchema", None)
                            or {}
                        )
                        props = schema.get("properties", {})
                        out = {k: v for k, v in given.items() if k in props}
                        for key in ("session", "name", "session_name", "session_id"):
                            if key in props:
                                out[key] = self.name("mcp")
                                break
                        return out

                    t0 = time.perf_counter()
                    res = await mcp.call_tool(
                        "start_code_executer", args("start_code_executer", idle_timeout=IDLE)
                    )
                    start_ms = (time.perf_counter() - t0) * 1000
                    if getattr(res, "is_error", None) or getattr(res, "isError", False):
                        raise RuntimeError(str(res.content)[:300])
                    call = args("execute_code", code="pass")
                    samples = []
                    for i in range(20 + self.n_fast // 4):
                        t0 = time.perf_counter()
                        res = await mcp.call_tool("execute_code", call)
                        if i >= 20:
                            samples.append((time.perf_counter() - t0) * 1000)
                    if getattr(res, "is_error", None) or getattr(res, "isError", False):
                        raise RuntimeError(str(res.content)[:300])
                    if "stop_code_executer" in tools:
                        await mcp.call_tool("stop_code_executer", args("stop_code_executer"))
        return {"mcp_exec_ms": u.summary(samples), "mcp_start_ms": start_ms}

    # -- 5: session start ------------------------------------------------------------
    def starts(self) -> None:
        self.env_image = images.ensure_image(self.docker, base_image=None, dependencies=())
        log("start: bare docker run + handshake")
        self.results["bare_run_ready_ms"] = u.summary(
            [self._bare_start(i) for i in range(self.n_slow)]
        )
        log("start: docker run with codeexec's flags + handshake")
        self.results["flags_run_ready_ms"] = u.summary(
            [self._bare_start(i, flags=True) for i in range(self.n_slow)]
        )
        log("start: cached image")
        samples = []
        for i in range(self.n_slow):
            t0 = time.perf_counter()
            s = ContainerSession.start(self.name(f"cached{i}"), idle_timeout=IDLE)
            samples.append((time.perf_counter() - t0) * 1000)
            s.stop()
        self.results["start_cached_ms"] = u.summary(samples)
        log("start: warm pool (the engine API's claim and the CLI's, interleaved)")
        ContainerSession.start(self.name("pool-first"), idle_timeout=IDLE, pool=1).stop()
        pools: dict[str, list[float]] = {"start_pool_ms": [], "start_pool_cli_ms": []}
        before = os.environ.get("CODEEXEC_ENGINE_API")
        for i in range(self.n_slow * 2):
            key = list(pools)[i % 2]  # CODEEXEC_ENGINE_API=0: the docker CLI's calls only
            os.environ["CODEEXEC_ENGINE_API"] = "0" if key == "start_pool_cli_ms" else "1"
            for warm in pool_mod._shared.values():
                warm.wait_ready(timeout=60)
            t0 = time.perf_counter()
            s = ContainerSession.start(self.name(f"pool{i}"), idle_timeout=IDLE, pool=1)
            pools[key].append((time.perf_counter() - t0) * 1000)
            s.execute("pass")
            s.stop()
        os.environ.pop("CODEEXEC_ENGINE_API")
        if before is not None:
            os.environ["CODEEXEC_ENGINE_API"] = before
        pool_mod.close_shared_pools()
        self.results.update({key: u.summary(samples) for key, samples in pools.items()})
        self.cold_start()

    def _bare_start(self, i: int, flags: bool = False) -> float:
        """``docker run -d`` + port lookup + retried handshake, like start() minus lookups.

        ``flags``: with the exact argument list codeexec uses (secure defaults, limits).
        """
        token = "bench-token-" + u.RUN_ID
        if flags:
            spec = RunSpec(
                image=self.env_image,
                container_name=self.name(f"flags{i}"),
                labels={"codeexec.bench": "1"},
                secret_env=("CODEEXEC_TOKEN",),
                env={"CODEEXEC_IDLE_TIMEOUT": str(IDLE)},
            )
            argv = run_argv(spec)
        else:
            argv = [
                "run",
                "-d",
                "--rm",
                "--name",
                self.name(f"bare{i}"),
                "--label",
                u.BENCH_LABEL,
                "-p",
                "127.0.0.1::8888",
                "-e",
                "CODEEXEC_TOKEN",
                self.env_image,
            ]
        t0 = time.perf_counter()
        cid = u.docker(*argv, env={"CODEEXEC_TOKEN": token})
        port = u.host_port(cid, 8888)
        deadline = time.monotonic() + 30
        while True:
            try:
                ExecutorClient.connect_tcp("127.0.0.1", port, token).close()
                break
            except ConnectionLost:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # the same back-off start() uses
        elapsed = (time.perf_counter() - t0) * 1000
        u.docker("rm", "-f", cid)
        return elapsed

    def cold_start(self) -> None:
        # A dependency nothing else uses, so its image layer is built for real.
        deps = ("six",)
        base = images.default_base_image()
        base_id = self.docker.inspect_images([base])[0].get("Id", "")
        tag = images.make_context(base, deps, images.host_index_settings(), base_id).tag
        u.docker("rmi", "-f", tag, check=False)
        log(f"start: cold image build ({tag}, dependency six)")
        t0 = time.perf_counter()
        try:
            s = ContainerSession.start(self.name("cold"), dependencies=deps, idle_timeout=IDLE)
        except Exception as exc:  # noqa: BLE001 - e.g. no package index reachable
            self.notes.append(f"cold start failed ({type(exc).__name__}: {exc}); skipped")
            return
        self.results["start_cold_ms"] = (time.perf_counter() - t0) * 1000
        s.stop()
        u.docker("rmi", "-f", tag, check=False)

    # -- 6: streaming throughput -----------------------------------------------------
    def throughput(self) -> None:
        mb = 20 if self.quick else 100
        log(f"streaming {mb} MB of stdout (fresh process)")
        u.reset_cgroup_peak(self.lib.container_id)  # the upload step's file counted too
        proc = subprocess.run(
            [sys.executable, "-m", "tests.benchmarks._stream_child", self.lib.name, str(mb)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        if proc.returncode != 0:
            self.notes.append(f"throughput child failed: {proc.stderr.strip()[-400:]}")
            return
        self.results["stream"] = json.loads(proc.stdout.strip().splitlines()[-1])
        peak = u.cgroup_memory(self.lib.container_id)
        if peak is not None:
            self.results["stream"]["container_peak_mib"] = peak[1] / 2**20

    # -- 7: scale (tests/benchmarks/_scale.py) ----------------------------------------
    def scale(self, count: int) -> None:
        self.results["scale"] = _scale.measure(count, prefix=u.PREFIX, log=log)


# -- report ------------------------------------------------------------------------------


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    def get(*path: str) -> float | None:
        node: Any = r
        for p in path:
            if not isinstance(node, dict) or p not in node:
                return None
            node = node[p]
        return float(node)

    out: list[tuple[str, str, bool | None]] = []

    def check(label: str, value: float | None, fmt: str, ok: Callable[[float], bool]) -> None:
        out.append(
            (
                label,
                "n/a" if value is None else fmt.format(value),
                None if value is None else ok(value),
            )
        )

    floor, lib = get("floor_ms", "p50"), get("lib_pass_ms", "p50")
    dexec, bare = get("docker_exec_ms", "p50"), get("bare_run_ready_ms", "p50")
    check(
        "execute p50 / floor p50 <= 2",
        lib / floor if lib and floor else None,
        "{:.2f}x",
        lambda v: v <= 2,
    )
    check(
        "docker exec p50 / execute p50 >= 50",
        dexec / lib if lib and dexec else None,
        "{:.0f}x",
        lambda v: v >= 50,
    )
    cached = get("start_cached_ms", "p50")
    check(
        "start (cached image) / bare run+ready <= 1.3",
        cached / bare if cached and bare else None,
        "{:.2f}x",
        lambda v: v <= 1.3,
    )
    check(
        "start from warm pool p50 <= 100 ms",
        get("start_pool_ms", "p50"),
        "{:.0f} ms",
        lambda v: v <= 100,
    )
    check(
        "streaming: host peak memory growth < 50 MiB",
        get("stream", "peak_growth_mib"),
        "{:.1f} MiB",
        lambda v: v < 50,
    )
    check("streaming >= 100 MB/s", get("stream", "mb_per_s"), "{:.0f} MB/s", lambda v: v >= 100)
    check(
        "idle session container < 30 MiB",
        get("scale", "idle_usage_mib_max"),
        "{:.1f} MiB",
        lambda v: v < 30,
    )
    for label, value, fmt, ok in _scale.targets(r.get("scale") or {}):
        check(label, value, fmt, ok)
    for wire in ("stdio", "http"):
        mcp, beside = get(f"mcp_{wire}_exec_ms", "p50"), get(f"mcp_{wire}_lib_ms", "p50")
        check(
            f"MCP execute_code over {wire} adds <= 1 ms over the library (p50)",
            mcp - beside if mcp and beside else None,
            "{:.2f} ms",
            lambda v: v <= 1.0,
        )
    check(
        "MCP initialize answered <= 500 ms after start (p50)",
        get("mcp_initialize_ms", "p50"),
        "{:.0f} ms",
        lambda v: v <= 500,
    )
    out.extend(_cli.targets(get))
    out += _rt.targets(r) + _shfiles.targets(r) + _relay.targets(r)
    return out + _build.targets(r) + _checkpoints.targets(r)


def table(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []

    def lat(label: str, key: str) -> None:
        s = r.get(key)
        if s:
            rows.append((label, f"p50 {s['p50']:.3f} ms   p99 {s['p99']:.3f} ms   (n={s['n']})"))

    lat("floor: raw TCP echo round trip (published port)", "floor_ms")
    lat("docker exec <c> python3 -c pass", "docker_exec_ms")
    lat("library execute('pass')", "lib_pass_ms")
    rows += _rt.rows(r) + _shfiles.rows(r)
    lat("library execute('x += 1')", "lib_incr_ms")
    lat("ExecutorClient.execute('pass') (no session layer)", "client_pass_ms")
    lat("codeexec exec -s NAME 'pass' (whole process)", "cli_exec_ms")
    lat("  codeexec --debug exec … (the full Typer path)", "cli_exec_typer_ms")
    lat("  docker exec <c> python3 -c pass (interleaved with it)", "cli_docker_exec_ms")
    lat("  python -c 'import codeexec.cli' (startup share)", "cli_import_ms")
    lat("  python -c 'import codeexec._cli_fast' (fast path's share)", "cli_import_fast_ms")
    lat("  python -c pass (interpreter startup)", "python_startup_ms")
    lat("codeexec ls with 20 running sessions", "cli_ls20_ms")
    lat("  codeexec --debug ls (the full Typer path)", "cli_ls20_typer_ms")
    lat("  docker ps --all (the listing's floor)", "cli_docker_ps_ms")
    lat("MCP execute_code tool call (Python SDK stdio client)", "mcp_exec_ms")
    lat("MCP execute_code, raw JSON-RPC over stdio", "mcp_stdio_exec_ms")
    lat("  library execute('pass') beside it", "mcp_stdio_lib_ms")
    lat("MCP execute_code, raw JSON-RPC over HTTP", "mcp_http_exec_ms")
    lat("  library execute('pass') beside it", "mcp_http_lib_ms")
    lat("MCP: process start to initialize answered", "mcp_initialize_ms")
    lat("  python -c 'import mcp.server.mcpserver' (the SDK)", "mcp_import_sdk_ms")
    lat("  python -c 'import codeexec.mcp_server'", "mcp_import_server_ms")
    if "mcp_start_ms" in r:
        rows.append(("MCP start_code_executer", f"{r['mcp_start_ms']:.0f} ms"))
    lat("start: bare docker run -d + handshake", "bare_run_ready_ms")
    lat("start: docker run -d with codeexec's flags + handshake", "flags_run_ready_ms")
    lat("start: ContainerSession.start, cached image", "start_cached_ms")
    lat("start: ContainerSession.start(pool=1), warm", "start_pool_ms")
    lat("  the same through the docker CLI (CODEEXEC_ENGINE_API=0)", "start_pool_cli_ms")
    if "start_cold_ms" in r:
        rows.append(("start: cold image build (dependency six)", f"{r['start_cold_ms']:.0f} ms"))
    st = r.get("stream")
    if st:
        rows.append(
            (
                f"stream {st['bytes'] / 2**20:.0f} MiB stdout (execute_stream)",
                f"{st['mb_per_s']:.0f} MB/s, host peak +{st['peak_growth_mib']:.1f} MiB "
                f"(sampled RSS +{st.get('rss_growth_sampled_mib', 0):.1f}), "
                f"container peak {st.get('container_peak_mib', 0):.0f} MiB",
            )
        )
    rows += _scale.rows(r["scale"]) if r.get("scale") else []
    rows += _relay.rows(r)
    rows += _build.rows(r)
    rows += _snap.rows(r.get("snapshots") or [])
    rows += _checkpoints.rows(r)
    rows += _runtimes.rows(r)
    width = max(len(a) for a, _ in rows)
    lines = [f"{a.ljust(width)}  {b}" for a, b in rows]
    lines.append("")
    lines.append("targets (ratios from this run):")
    for label, value, ok in targets(r):
        mark = "n/a " if ok is None else ("met " if ok else "MISS")
        lines.append(f"  [{mark}] {label}: {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, 20 MB stream")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--skip",
        default="",
        help="comma list: rt,shfiles,relay,cli,mcp,starts,stream,scale,build,snapshots,checkpoints,"
        "runtimes",
    )
    parser.add_argument("--scale", type=int, default=100, help="idle sessions (default 100)")
    parser.add_argument("--heavy", action="store_true", help="also build numpy+pandas+matplotlib")
    args = parser.parse_args(argv)
    if shutil.which(u.DOCKER) is None:
        print("no docker CLI on PATH", file=sys.stderr)
        return 2
    skip = set(filter(None, args.skip.split(",")))
    bench = Bench(args.quick)
    t0 = time.perf_counter()
    try:
        bench.floor()
        bench.docker_exec()
        bench.library()
        steps = [
            (
                "rt",
                lambda: bench.results.update(_rt.measure(bench.echo, bench.lib.name, bench.n_fast)),
            ),
            (
                "shfiles",
                lambda: bench.results.update(_shfiles.measure(bench.lib.name, bench.n_slow * 10)),
            ),
            (
                "relay",
                lambda: bench.results.update(
                    _relay.measure(
                        bench.lib.name, bench.n_fast, 20 if args.quick else 100, u.PREFIX, IDLE
                    )
                ),
            ),
            ("cli", bench.cli),
            ("mcp", bench.mcp),
            ("stream", bench.throughput),
            ("starts", bench.starts),
            ("scale", lambda: bench.scale(args.scale)),
            ("build", lambda: _build.run(bench.results, log, heavy=args.heavy)),
            (
                "snapshots",
                lambda: bench.results.update(snapshots=_snap.measure(u.PREFIX, log, bench.quick)),
            ),
            (
                "checkpoints",
                lambda: bench.results.update(_checkpoints.run(bench.name, IDLE, bench.quick, log)),
            ),
            (
                "runtimes",
                lambda: _runtimes.run(bench.results, log, n_fast=bench.n_fast, n_slow=bench.n_slow),
            ),
        ]
        for key, step in steps:
            if key not in skip:
                step()
    finally:
        pool_mod.close_shared_pools()
        removed = u.cleanup()
        log(f"removed {removed} benchmark containers")
    data = {
        "machine": u.machine(),
        "results": bench.results,
        "notes": bench.notes,
        "targets": [{"target": a, "value": b, "met": c} for a, b, c in targets(bench.results)],
        "wall_s": time.perf_counter() - t0,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    m = data["machine"]
    print(
        f"\ncodeexec benchmarks — {m['nproc']} cores, {m['memory_gib']} GiB, docker "
        f"{m['docker']}, kernel {m['kernel']}, cgroup {m['cgroup']}, Python {m['python']}"
    )
    print(table(bench.results))
    for note in bench.notes:
        print(f"note: {note}")
    print(f"(wall time {data['wall_s']:.0f} s)")
    u.write_json(ROOT / ".bench" / "results.json", data)
    if args.json:
        u.write_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
