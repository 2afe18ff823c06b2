"""The values the host and the executor must agree on, defined once, here.

The executor imports this module; the host (codeexec/_shared.py) reads this same
file from the executor source shipped with it. So this file stays plain
assignments of literals and arithmetic on them: standard library only, Python 3.9,
no imports, no side effects (docs/architecture.md, tests/test_shared_constants.py).
"""

MiB = 1024 * 1024

# -- the wire (docs/protocol.md) ----------------------------------------------------
PROTOCOL_VERSION = 2
DEFAULT_FRAME_LIMIT = 64 * MiB  # bytes of one frame's body, unless CODEEXEC_FRAME_LIMIT
# Before a connection has authenticated, its peer may not make the executor buffer
# more than this: a hello or an auth frame is a few hundred bytes.
HELLO_FRAME_LIMIT = 64 * 1024
HELLO_TIMEOUT = 5.0  # seconds to complete the handshake, unless CODEEXEC_HELLO_TIMEOUT
NONCE_BYTES = 32
PROOF_BYTES = 32  # an HMAC-SHA256 digest
# Each side's proof has its own label, so one side's proof is never valid as the other's.
SERVER_PROOF_LABEL = b"codeexec-v2 server proof\0"
CLIENT_PROOF_LABEL = b"codeexec-v2 client proof\0"

# -- what one execution brings back (ResultLimits on the host) -----------------------
# Output and displays count UTF-8 bytes as sent; the value and the error count
# characters. The executor cuts at these unless the exec request (or the
# CODEEXEC_*_LIMIT variable) says otherwise; the host cuts again, a little later.
OUTPUT_LIMIT = 16 * MiB
DISPLAY_LIMIT = 32 * MiB
VALUE_LIMIT = 1 * MiB
ERROR_LIMIT = 1 * MiB
DISPLAY_OVERHEAD = 512  # bytes each display counts besides its data: many tiny ones add up
ENAME_LIMIT = 256  # characters of an exception's class name
TRACEBACK_HEAD_LINES = 3  # "Traceback (most recent call last):" and the first frame

# Seconds between the interrupt of a timed-out (or interrupted) execution and the
# restart of a worker that ignores it, unless CODEEXEC_INTERRUPT_GRACE.
INTERRUPT_GRACE = 2.0

# -- the session container (codeexec/_dockerargs.py, Dockerfile.template) -----------
EXECUTOR_PORT = 8888  # where the supervisor listens, unless CODEEXEC_PORT
EXECUTOR_UID = 10001  # the session's user, who owns /workspace and nothing under /opt
# The executor runs by this path, never with `python -m` (see __main__.py).
EXECUTOR_MAIN = "/opt/codeexec/codeexec_executor/__main__.py"
# Runtime installs land here; the worker appends it to sys.path (CODEEXEC_SITE_DIR).
SITE_DIR = "/tmp/.codeexec-site"
