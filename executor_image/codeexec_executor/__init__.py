"""codeexec's in-container executor: a supervisor that speaks the wire protocol
(docs/protocol.md) and a worker process that holds the persistent namespace.

Standard library only, Python 3.9 or newer.
"""

__version__ = "2.0.0"
