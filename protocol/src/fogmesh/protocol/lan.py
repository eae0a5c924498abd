"""Zero-conf on the LAN: what a site broker announces by mDNS / DNS-SD and how it is checked.

A site broker (``announce:`` in the mesh file, ``fogmesh.broker.announce``) registers one
service of type :data:`SERVICE_TYPE` whose TXT record holds :data:`TXT_SITE`,
:data:`TXT_BROKER`, :data:`TXT_TLS` (``1`` or ``0``) and, with TLS, :data:`TXT_FINGERPRINT`,
the SHA-256 of its certificate (:func:`fingerprint`). An agent (``fogmesh.agent.discovery``)
browses for it; an announcement is only a hint: the fingerprint counts once the certificate
the broker actually presents has it.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "SERVICE_TYPE",
    "TXT_BROKER",
    "TXT_FINGERPRINT",
    "TXT_SITE",
    "TXT_TLS",
    "TXT_VERSION",
    "fingerprint",
    "normalise_fingerprint",
]

SERVICE_TYPE = "_fogmesh-mqtt._tcp.local."
TXT_VERSION = "v"
TXT_SITE = "site"
TXT_BROKER = "broker"
TXT_TLS = "tls"
TXT_FINGERPRINT = "fp"


def fingerprint(der: bytes) -> str:
    """A certificate's fingerprint as announced and trusted: ``sha256:`` and 64 hex digits."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def normalise_fingerprint(text: str) -> str:
    """``text`` (``sha256:AB:CD...``, ``abcd...``, as openssl or a person writes it) in the
    form of :func:`fingerprint`; ``ValueError`` if it is not a SHA-256 fingerprint."""
    body = text.strip().lower().removeprefix("sha256:").removeprefix("sha256 fingerprint=")
    body = body.replace(":", "")
    if len(body) != 64 or any(c not in "0123456789abcdef" for c in body):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return "sha256:" + body
