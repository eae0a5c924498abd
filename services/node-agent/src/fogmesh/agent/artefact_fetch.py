"""Artefacts by reference (``sha256:...``): fetched from the node's site cache, checked, kept.

The agent asks its site's cache on ``fm/v1/ops/cache-{site}/artefact-fetch`` for a ref on
behalf of a workload's tenant; the cache (which pulled it from the store once for the whole
site) answers with a one-time URL on its own host, and the agent downloads the bytes from there
over the site's LAN and checks them against the ref. Blobs are kept under
``{state_dir}/.blobs/{sha256}`` with the tenants the cache admitted for each, so a node that
lost its broker still starts what it has for those tenants (and no other: a ref another tenant
fetched here is asked about again). Blobs no workload names any more are dropped after a grace
period (:mod:`fogmesh.agent.blob_gc`). The artefact contract and ``urllib.request`` are imported
on first use: a node that fetches nothing never loads them (docs/agent.md, "Memory").
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import structlog

from fogmesh.agent.runtime.errors import PrepareFailed
from fogmesh.bus import Bus
from fogmesh.protocol import RemoteError, RequestTimeout, topics

if TYPE_CHECKING:
    from fogmesh.protocol.artefacts import FetchReady

__all__ = ["SiteFetcher"]

log = structlog.get_logger("fogmesh.agent")

_READ = 1 << 20
_HEX = frozenset("0123456789abcdef")


def _is_digest(name: str) -> bool:
    return len(name) == 64 and set(name) <= _HEX


class SiteFetcher:
    """Fetches refs for the runtimes of one node (``bus`` gives the agent's bus once it
    exists). ``timeout`` bounds one fetch, the cache's pull from the store included."""

    def __init__(
        self,
        state_dir: Path,
        node: str,
        site: str,
        bus: Callable[[], Bus | None],
        *,
        timeout: float = 600.0,
        max_bytes: int = 8 << 30,
    ) -> None:
        self.root = Path(state_dir) / ".blobs"
        self.node = node
        self.site = site
        self._bus = bus
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._locks: dict[str, asyncio.Lock] = {}

    def path(self, ref: str) -> Path:
        """Where the blob of ``ref`` is kept on this node."""
        from fogmesh.protocol.artefacts import ref_digest

        return self.blob(ref_digest(ref))

    def blob(self, digest: str) -> Path:
        """Where the blob of sha256 ``digest`` (hex) is kept on this node."""
        return self.root / digest

    def lock(self, ref: str) -> asyncio.Lock:
        """The lock a fetch of ``ref`` holds (the collector drops a blob under it)."""
        return self._locks.setdefault(ref, asyncio.Lock())

    def held(self) -> list[str]:
        """The digests of the blobs this node keeps (not downloads in progress)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and _is_digest(p.name))

    def drop(self, ref: str) -> bool:
        """Forget ``ref``'s blob and its tenants (call under :meth:`lock`); False if absent."""
        blob = self.path(ref)
        blob.with_suffix(".tenants").unlink(missing_ok=True)
        try:
            blob.unlink()
        except FileNotFoundError:
            return False
        return True

    def admitted(self, ref: str) -> set[str]:
        """The tenants the site's cache admitted for ``ref`` on this node."""
        return self._tenants(ref)

    def _tenants(self, ref: str) -> set[str]:
        listed = self.path(ref).with_suffix(".tenants")
        return set(listed.read_text().split()) if listed.exists() else set()

    async def fetch(self, ref: str, tenant: str) -> Path:
        """The checked local copy of ``ref`` for a workload of ``tenant``.

        Raises :class:`PrepareFailed` when the site has no cache, the cache refuses (another
        tenant's ref, an unknown one) or the bytes do not match the ref.
        """
        async with self.lock(ref):
            blob = self.path(ref)
            if blob.is_file() and tenant in self._tenants(ref):
                return blob
            ready = await self._ask(ref, tenant)
            if not blob.is_file():
                await asyncio.to_thread(self._download, ready, blob)
            listed = blob.with_suffix(".tenants")
            listed.write_text("\n".join(sorted({*self._tenants(ref), tenant})) + "\n")
            return blob

    async def _ask(self, ref: str, tenant: str) -> FetchReady:
        from fogmesh.protocol.artefacts import FETCH_VERB, FetchArtefact, FetchReady, cache_duty

        bus = self._bus()
        if bus is None or not self.site:
            raise PrepareFailed(f"fetch {ref}: this node names no site or has no bus")
        if not bus.connected:  # fail now: the reconciler retries with back-off
            raise PrepareFailed(f"fetch {ref}: not connected to the site's broker")
        topic = topics.ops(cache_duty(self.site), FETCH_VERB)
        request = FetchArtefact(ref=ref, tenant=tenant, node=self.node)
        try:
            return await bus.request(topic, request, FetchReady, timeout=self.timeout)
        except RequestTimeout as exc:
            raise PrepareFailed(f"fetch {ref}: site {self.site}'s cache did not answer") from exc
        except RemoteError as exc:
            raise PrepareFailed(f"fetch {ref}: {exc.error.message}") from exc

    def _download(self, ready: FetchReady, blob: Path) -> None:
        from urllib.request import urlopen

        from fogmesh.protocol.artefacts import ref_digest

        url = urllib.parse.urlparse(ready.url)
        if url.scheme != "http":  # the cache's own server; never a tenant's URL
            raise PrepareFailed(f"fetch {ready.ref}: the cache answered a {url.scheme} URL")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".download-")
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        total = 0
        try:
            with (
                os.fdopen(fd, "wb") as out,
                cast(BinaryIO, urlopen(ready.url, timeout=60)) as source,  # noqa: S310
            ):
                while block := source.read(_READ):
                    total += len(block)
                    if total > self.max_bytes:
                        raise PrepareFailed(f"fetch {ready.ref}: larger than {self.max_bytes}")
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != ref_digest(ready.ref):
                raise PrepareFailed(f"fetch {ready.ref}: the bytes do not match the ref")
            tmp.replace(blob)
            log.info("artefact fetched", ref=ready.ref, size=total, site=self.site)
        except OSError as exc:
            raise PrepareFailed(f"fetch {ready.ref}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
