#!/usr/bin/env python3
"""A scripted stand-in for the docker CLI, put on PATH through CODEEXEC_DOCKER.

Appends each argument list (JSON, one per line) to $FAKE_DOCKER_LOG. Behaviour is
changed through env vars: FAKE_DOCKER_FAIL=<verb> makes that verb exit 1 with
$FAKE_DOCKER_STDERR on stderr; FAKE_DOCKER_STDOUT_<VERB> sets its stdout;
FAKE_DOCKER_IIDFILE is written to a build's --iidfile; stdin is logged as "stdin"
when FAKE_DOCKER_STDIN=1.
FAKE_DOCKER_FLOOD_MIB=<n> makes every call that would build or run in the foreground
(`build`, `run` or `start` without `-d`) print n MiB of 1 KiB log lines, then fail:
a build whose log has no end (tests/integration/test_trust_bounds.py).
FAKE_DOCKER_STATE=<dir> turns it into a small engine that runs the real executor
locally (tests/fake_engine.py): tests/test_session.py drives ContainerSession on it.
"""

import json
import os
import sys


def main() -> int:
    args = sys.argv[1:]
    log = os.environ.get("FAKE_DOCKER_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            record = {"argv": args, "token": os.environ.get("CODEEXEC_TOKEN")}
            if os.environ.get("FAKE_DOCKER_STDIN") == "1":
                record["stdin"] = sys.stdin.read()
            f.write(json.dumps(record) + "\n")
    verb = args[0] if args else ""
    if os.environ.get("FAKE_DOCKER_FAIL") in (verb, "all"):
        sys.stdout.write(os.environ.get(f"FAKE_DOCKER_STDOUT_{verb.upper()}", ""))
        sys.stderr.write(os.environ.get("FAKE_DOCKER_STDERR", "Error: failed\n"))
        return int(os.environ.get("FAKE_DOCKER_EXIT", "1"))
    if "--iidfile" in args and os.environ.get("FAKE_DOCKER_IIDFILE"):
        with open(args[args.index("--iidfile") + 1], "w", encoding="utf-8") as f:
            f.write(os.environ["FAKE_DOCKER_IIDFILE"])
    if os.environ.get("FAKE_DOCKER_STATE"):
        from pathlib import Path

        import fake_engine  # next to this file, so on sys.path

        return fake_engine.main(Path(os.environ["FAKE_DOCKER_STATE"]), args)
    flood = os.environ.get("FAKE_DOCKER_FLOOD_MIB")
    foreground = verb == "build" or (
        verb in ("run", "start") and not {"-d", "--detach"} & set(args)
    )
    if flood and foreground:
        block = ("Step 3/9 : building wheel " + "." * 997)[:1023] + "\n"
        chunk = block * 1024  # 1 MiB
        for _ in range(int(flood)):
            sys.stdout.write(chunk)
        return 1
    out = os.environ.get(f"FAKE_DOCKER_STDOUT_{verb.upper()}")
    if out is not None:
        sys.stdout.write(out)
    elif verb == "version":
        sys.stdout.write("20.10.24\n")
    elif verb == "run":
        sys.stdout.write("f" * 64 + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
