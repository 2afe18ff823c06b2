"""The main job end to end: start a session with a real dependency, run code whose
state persists, show an error and a timeout that keep the namespace, stop.

Run with `make demo` (it sets up Docker, the base image and the virtualenv first).
"""

from __future__ import annotations

import sys
import time

from codeexec import ContainerSession


def progress(line: str) -> None:
    # The build log is long; its step lines are enough to follow along.
    if line.startswith(("Step ", "building", "starting", "Successfully")):
        print(f"  | {line}", file=sys.stderr)


def main() -> int:
    t0 = time.perf_counter()
    print("starting session 'demo' with dependency six (builds the image once)...")
    with ContainerSession.start("demo", dependencies=["six"], on_progress=progress) as s:
        print(f"  ready in {time.perf_counter() - t0:.1f} s: {s!r}")
        r = s.execute("import six, sys\nx = [i * i for i in range(5)]\nsix.__version__")
        print(f"  six version in the container: {r.value}")
        r = s.execute("print('state persists:', x)\nsum(x)")
        print(f"  stdout: {r.stdout.strip()}  value: {r.value}")
        r = s.execute("1/0")
        print(f"  error: {r.status} {r.error.ename if r.error else ''}")
        r = s.execute("import time\nwhile True: time.sleep(0.1)", timeout=1)
        print(f"  timeout: {r.status}; namespace kept: {s.execute('x').value}")
        timings = []
        for _ in range(50):
            t = time.perf_counter()
            s.execute("pass")
            timings.append((time.perf_counter() - t) * 1000)
        timings.sort()
        print(f"  execute('pass') p50 over 50 calls: {timings[25]:.2f} ms")
    print("stopped; the container is removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
