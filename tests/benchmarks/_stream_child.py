"""Run in a fresh process: stream N MB of stdout from a session, report speed and memory.

``python -m tests.benchmarks._stream_child SESSION MB`` prints one JSON line. It
iterates ``execute_stream`` with ``output_limit`` raised and counts characters
without keeping them. A fresh process, so that the peak RSS (``ru_maxrss``)
measures this transfer only.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from codeexec import ContainerSession, StreamEvent

CODE = """\
import sys
_chunk = ("x" * 1023 + "\\n") * 1024
for _ in range({mb}):
    sys.stdout.write(_chunk)
del _chunk
"""


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def main() -> None:
    name, mb = sys.argv[1], int(sys.argv[2])
    session = ContainerSession.attach(name)
    session.execute("print('warm-up')")  # imports and buffers settle before the baseline
    before_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before_rss = rss_kib()
    received = 0
    t0 = time.perf_counter()
    status = "?"
    events, max_rss = 0, before_rss
    for event in session.execute_stream(CODE.format(mb=mb), output_limit=(mb + 8) << 20):
        if isinstance(event, StreamEvent):
            received += len(event.text)  # counted, never kept
            events += 1
            if events % 16 == 0:
                max_rss = max(max_rss, rss_kib())
        else:
            status = event.status
    elapsed = time.perf_counter() - t0
    after_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    session.close()
    print(
        json.dumps(
            {
                "status": status,
                "bytes": received,
                "seconds": elapsed,
                "mb_per_s": received / 2**20 / elapsed,
                "peak_growth_mib": (after_peak - before_peak) / 1024,
                "rss_before_mib": before_rss / 1024,
                "rss_growth_sampled_mib": (max_rss - before_rss) / 1024,
                "events": events,
            }
        )
    )


if __name__ == "__main__":
    main()
