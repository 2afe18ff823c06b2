"""The pieces of the challenge-response handshake (docs/protocol.md): nonces and
proofs. Mirrors codeexec/protocol.py on the host.

Each side proves it knows the session token with an HMAC-SHA256, keyed by the token,
over its own side's label and both sides' fresh nonces. The token itself never
crosses the wire, and a proof made for one connection is worthless on any other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from . import constants

PROTOCOL = constants.PROTOCOL_VERSION
NONCE_BYTES = constants.NONCE_BYTES
PROOF_BYTES = constants.PROOF_BYTES
SERVER_LABEL = constants.SERVER_PROOF_LABEL
CLIENT_LABEL = constants.CLIENT_PROOF_LABEL


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def proof(token: bytes, label: bytes, nonces: bytes) -> bytes:
    """``nonces`` is the client's nonce followed by the server's."""
    return hmac.new(token, label + nonces, hashlib.sha256).digest()


def proof_ok(token: bytes, label: bytes, nonces: bytes, claimed) -> bool:
    """Whether ``claimed`` (base64, from the wire) is the right proof; constant time."""
    data = unb64(claimed, PROOF_BYTES)
    return data is not None and hmac.compare_digest(data, proof(token, label, nonces))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value, size: int):
    """Strict base64 of exactly ``size`` bytes, else None."""
    if not isinstance(value, str) or len(value) > 4 * size:
        return None
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if len(data) == size else None
