"""Where the engine listens: ``docker_url``, else ``DOCKER_HOST``, else the local socket."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["DEFAULT_SOCKET", "Address", "engine_address"]

DEFAULT_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class Address:
    """A unix socket ``path``, or a TCP ``host`` and ``port`` (plain HTTP)."""

    path: str | None = None
    host: str = "localhost"
    port: int = 2375

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.path else f"tcp://{self.host}:{self.port}"


def engine_address(url: str | None = None) -> Address:
    """The engine's address from ``url`` (``unix:///path``, ``tcp://host:port``,
    ``http://host:port``), else from ``DOCKER_HOST``, else :data:`DEFAULT_SOCKET`.

    TLS to the engine (``https://``, ``DOCKER_TLS_VERIFY``) is refused: the agent speaks to its
    own node's engine, over the local socket or a plain loopback port.
    """
    text = url or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    parts = urlsplit(text)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise ValueError(f"engine url {text!r} names no socket")
        return Address(path=path)
    if parts.scheme in ("tcp", "http"):
        if not url and os.environ.get("DOCKER_TLS_VERIFY"):
            raise ValueError("DOCKER_TLS_VERIFY is set: TLS to the engine is not supported")
        return Address(host=parts.hostname or "localhost", port=parts.port or 2375)
    raise ValueError(f"engine url {text!r}: only unix://, tcp:// and http:// are supported")
