"""python -m codeexec_executor [serve | relay [PORT] | worker]

In a session image every executor process is started by this file's path instead
(`python -s /opt/codeexec/codeexec_executor/__main__.py serve`, see
codeexec/_dockerargs.py): `python -m` puts the working directory, which the
session's code can write, first on sys.path, so a planted
/workspace/codeexec_executor/__main__.py would run instead of this one. Run by
path, sys.path[0] is this root-owned directory; it is replaced by its parent so
that the package imports as `codeexec_executor` from there and nowhere else.
"""

from __future__ import annotations

import os
import sys

USAGE = "usage: python -m codeexec_executor [serve | relay [PORT] | worker]\n"

if __name__ == "__main__" and not __package__:
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from codeexec_executor.__main__ import main  # type: ignore[attr-defined]
else:

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
