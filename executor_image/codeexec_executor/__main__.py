"""python -m codeexec_executor [serve | relay [PORT] | worker]"""

from __future__ import annotations

import sys

USAGE = "usage: python -m codeexec_executor [serve | relay [PORT] | worker]\n"


def main(argv: list) -> int:
    command = argv[0] if argv else "serve"
    if command == "serve":
        from .server import main as serve

        return serve()
    if command == "relay":
        from .relay import main as relay

        return relay(argv[1:])
    if command == "worker":
        from .worker import main as worker

        return worker()
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
