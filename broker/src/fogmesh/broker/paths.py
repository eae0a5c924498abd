"""A link's paths to its remote broker: which to use, how fast, and how many bytes each carried.

A link lists its paths in order of preference (``paths:`` in the mesh file; none means the one
``remote``). The remote side of the link connects over the first path it can reach whose
monthly byte budget is not spent, and while it runs on a less preferred one it tries the better
ones every ``probe_every`` seconds (:func:`probe`) and moves back as soon as one answers. Each
path has its own rate limit (a token bucket in bytes/s, :class:`Bucket`) and its byte count for
the calendar month (UTC), kept in ``links/{link}/paths.json`` so a restart does not reset it.
Bytes are application bytes (topic and payload) each way, not TCP overhead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from aiomqtt import MqttError

from fogmesh.broker.config import PathSpec, ResolvedEndpoint
from fogmesh.broker.wire import WireBytes, count_bytes
from fogmesh.protocol.errors import FogmeshError

__all__ = [
    "Bucket",
    "LinkPath",
    "PathBook",
    "PathSpent",
    "PreferredBack",
    "probe",
    "tls_parameters",
]

log = logging.getLogger(__name__)


class PreferredBack(FogmeshError):  # a signal, not a fault
    """A more preferred path answers again: leave the current one for it."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path {path} answers again")
        self.path = path


class PathSpent(FogmeshError):  # a signal, not a fault
    """The current path's monthly byte budget is used up."""


class Bucket:
    """A token bucket of bytes: :meth:`take` waits until ``n`` bytes may go."""

    def __init__(self, rate: float) -> None:
        """``rate`` bytes per second; the bucket holds one second's worth (or one batch)."""
        self.rate = rate
        self._tokens = rate
        self._at = time.monotonic()

    async def take(self, n: int) -> None:
        """Wait until ``n`` bytes fit in the rate, then spend them."""
        while True:
            now = time.monotonic()
            cap = max(self.rate, float(n))  # one batch may be larger than a second's worth
            self._tokens = min(cap, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= n:
                self._tokens -= n
                return
            await asyncio.sleep((n - self._tokens) / self.rate)


@dataclass
class LinkPath:
    """One path with its resolved address, its bucket and its place in the preference order."""

    index: int
    spec: PathSpec
    end: ResolvedEndpoint
    bucket: Bucket | None = field(default=None)

    def __post_init__(self) -> None:
        if self.spec.rate is not None:
            self.bucket = Bucket(self.spec.rate)

    @property
    def name(self) -> str:
        """The path's name from the mesh file (``default`` for a link without paths)."""
        return self.spec.name


def _month(now: float | None = None) -> str:
    return time.strftime("%Y-%m", time.gmtime(now))


class PathBook:
    """Bytes per path this calendar month (UTC), on disk in ``paths.json`` (best effort)."""

    def __init__(self, path: Path) -> None:
        """Read the month's counts left by an earlier run (another month's start at zero)."""
        self.path = path
        self.month = _month()
        self.bytes: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("month") == self.month:
                self.bytes = {str(k): int(v) for k, v in data.get("bytes", {}).items()}
        self._saved = dict(self.bytes)

    def add(self, path: str, n: int) -> None:
        """Count ``n`` bytes carried over ``path``; a new month starts the counts again."""
        month = _month()
        if month != self.month:
            self.month, self.bytes = month, {}
        self.bytes[path] = self.bytes.get(path, 0) + n

    def spent(self, path: LinkPath) -> bool:
        """Whether ``path``'s monthly budget is used up."""
        budget = path.spec.budget_bytes
        return budget is not None and self.bytes.get(path.name, 0) >= budget

    def save(self) -> None:
        """Write the counts if they changed (atomically: a crash leaves the old file)."""
        if self.bytes == self._saved:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"month": self.month, "bytes": self.bytes}))
            tmp.replace(self.path)
            self._saved = dict(self.bytes)
        except OSError as exc:
            log.warning("cannot save path byte counts to %s: %s", self.path, exc)


def tls_parameters(end: ResolvedEndpoint) -> aiomqtt.TLSParameters | None:
    """aiomqtt's TLS parameters for a link's end (None: plain MQTT)."""
    if end.tls is None:
        return None
    return aiomqtt.TLSParameters(
        ca_certs=str(end.tls.cafile) if end.tls.cafile else None,
        certfile=str(end.tls.certfile) if end.tls.certfile else None,
        keyfile=str(end.tls.keyfile) if end.tls.keyfile else None,
    )


async def probe(path: LinkPath, identifier: str, *counters: WireBytes) -> bool:
    """Whether the remote broker answers an MQTT CONNECT over ``path`` (a clean session that
    is closed at once), within the path's ``connect_timeout``; its bytes go to ``counters``."""
    end = path.end
    tls = tls_parameters(end)
    client = aiomqtt.Client(
        end.host,
        end.port,
        identifier=identifier,
        username=end.username,
        password=end.password,
        clean_session=True,
        keepalive=max(5, path.spec.keepalive or 5),
        tls_params=tls,
        tls_insecure=bool(end.tls and end.tls.insecure) or None,
        timeout=path.spec.connect_timeout,
    )
    count_bytes(client, *counters)
    try:
        async with asyncio.timeout(path.spec.connect_timeout):
            await client.__aenter__()
    except (MqttError, TimeoutError, OSError):
        return False
    with contextlib.suppress(MqttError, TimeoutError, OSError):
        async with asyncio.timeout(path.spec.connect_timeout):
            await client.__aexit__(None, None, None)
    return True
