"""Password hashes in Mosquitto's ``$7$`` format (PBKDF2-HMAC-SHA512), shared by both brokers.

Using Mosquitto's own format means one mesh file feeds the embedded broker and a rendered
``mosquitto`` password file alike: no plain-text password is ever written to disk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

__all__ = ["hash_password", "verify_password"]

_ITERATIONS = 101  # mosquitto_passwd's default; the salt, not the count, defeats rainbow tables
_SALT_BYTES = 12
_MAX_ITERATIONS = 1_000_000  # refuse absurd counts from a hand-edited file (CPU exhaustion)


def hash_password(password: str, *, iterations: int = _ITERATIONS) -> str:
    """Hash ``password`` as ``$7$iterations$salt$hash`` (base64), as mosquitto_passwd does."""
    salt = os.urandom(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded``; False for a mismatch or a malformed hash."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    if not 1 <= iterations <= _MAX_ITERATIONS or not expected:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return hmac.compare_digest(digest, expected)
