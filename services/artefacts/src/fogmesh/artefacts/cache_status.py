"""What a site's cache holds, asked on the bus (protocol: :mod:`fogmesh.protocol.cache_status`).

:class:`CacheStatusDesk` answers ``fm/v1/ops/cache-{site}/status`` at the cache (operators:
everything, or one tenant's refs); :class:`CacheStatusRelay` answers a tenant's
``fm/v1/api/{tenant}/artefacts/cache-status`` at the store by asking that site's cache for
the topic's tenant only (a tenant's API requests reach the cloud, not the sites, and a tenant
may not publish under ``fm/v1/ops``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fogmesh.bus import MessageContext, Refusal
from fogmesh.protocol import ErrorCode, RemoteError, RequestTimeout, topics
from fogmesh.protocol.artefacts import cache_duty, ref_of
from fogmesh.protocol.cache_status import (
    CACHE_STATUS_VERB,
    CachedArtefact,
    CachePull,
    CacheStatus,
    CacheStatusRequest,
)

if TYPE_CHECKING:
    from fogmesh.artefacts.cache import CacheService

__all__ = ["RELAY_TIMEOUT_S", "CacheStatusDesk", "CacheStatusRelay"]

RELAY_TIMEOUT_S = 10.0
"""How long the store waits for a site's cache before answering ``unavailable``."""


class CacheStatusDesk:
    """Answers what ``cache`` holds; ``answer`` is its router's handler."""

    def __init__(self, cache: CacheService) -> None:
        self.cache = cache

    async def answer(self, request: CacheStatusRequest, ctx: MessageContext) -> None:
        site = self.cache.config.site
        if request.site is not None and request.site != site:
            raise Refusal(
                ErrorCode.INVALID_REQUEST, f"this is the cache of {site}, not of {request.site}"
            )
        await ctx.reply(self.status(request))

    def status(self, request: CacheStatusRequest) -> CacheStatus:
        """The cache's state as ``request`` may see it (one tenant's, or all of it)."""
        cache, tenant = self.cache, request.tenant
        blobs = cache.blobs
        held: list[CachedArtefact] = []
        total = 0
        for digest, entry in list(blobs.index.items()):
            path = blobs.blob(digest)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # admitted, not pulled yet (or evicted)
            total += stat.st_size
            if tenant is not None and tenant not in entry.owners:
                continue
            held.append(
                CachedArtefact(
                    ref=ref_of(digest),
                    name=entry.name,
                    kind=entry.kind,
                    size=entry.size,
                    tenants=[tenant] if tenant is not None else sorted(entry.owners),
                    last_used=stat.st_mtime,
                )
            )
        held.sort(key=lambda a: -a.last_used)
        return CacheStatus.to(
            request,
            site=cache.config.site,
            artefacts=held,
            pulls=self._pulls(tenant),
            used_bytes=total if tenant is None else sum(a.size for a in held),
            max_bytes=cache.config.max_bytes,
        )

    def _pulls(self, tenant: str | None) -> list[CachePull]:
        cache = self.cache
        found: list[CachePull] = []
        for digest, lock in list(cache._pulling.items()):
            if not lock.locked():
                continue
            entry = cache.blobs.index.get(digest)
            if entry is None or (tenant is not None and tenant not in entry.owners):
                continue
            try:
                offset = (cache.pulls / digest).stat().st_size
            except FileNotFoundError:
                offset = 0
            found.append(
                CachePull(
                    ref=ref_of(digest),
                    size=entry.size,
                    offset=min(offset, entry.size),
                    tenants=[tenant] if tenant is not None else sorted(entry.owners),
                )
            )
        return found


class CacheStatusRelay:
    """At the store: a tenant's ``artefacts/cache-status`` asked of the site's cache for that
    tenant only; ``answer`` is the store's router's (background) handler."""

    def __init__(self, timeout: float = RELAY_TIMEOUT_S) -> None:
        self.timeout = timeout

    async def answer(self, request: CacheStatusRequest, ctx: MessageContext) -> None:
        tenant = ctx.ref.tenant if ctx.ref is not None else None
        if tenant is None:  # pragma: no cover -- the filter is an API topic
            raise Refusal(ErrorCode.INVALID_REQUEST, "asked for under api/{tenant} only")
        if request.site is None:
            raise Refusal(ErrorCode.INVALID_REQUEST, "name the site whose cache to ask (site)")
        source = ctx.bus.config.client_id
        asked = CacheStatusRequest(tenant=tenant, site=request.site, source=source)
        try:
            status = await ctx.bus.request(
                topics.ops(cache_duty(request.site), CACHE_STATUS_VERB),
                asked,
                CacheStatus,
                timeout=self.timeout,
            )
        except RequestTimeout as exc:
            raise Refusal(
                ErrorCode.UNAVAILABLE,
                f"the cache of {request.site} does not answer (no cache there, or its link is "
                "down); retry later",
            ) from exc
        except RemoteError as exc:
            raise Refusal(exc.code, exc.error.message) from exc
        # only the tenant's own refs, whatever the cache sent
        mine = [a for a in status.artefacts if a.tenants == [tenant]]
        pulls = [p for p in status.pulls if p.tenants == [tenant]]
        await ctx.reply(
            CacheStatus.to(
                request,
                tenant=tenant,
                site=status.site,
                artefacts=mine,
                pulls=pulls,
                used_bytes=sum(a.size for a in mine),
                max_bytes=status.max_bytes,
            )
        )
