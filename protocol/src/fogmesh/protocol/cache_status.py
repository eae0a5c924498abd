"""What a site's artefact cache holds (``docs/artefacts.md``, "What a cache holds").

Two ways to ask, one answer (:class:`CacheStatus`):

* an operator asks a site's cache itself on ``fm/v1/ops/cache-{site}/status``
  (:class:`CacheStatusRequest`): every artefact it holds, with every tenant holding each, or
  only one tenant's when the request names a ``tenant``;
* a tenant asks the store on ``fm/v1/api/{tenant}/artefacts/cache-status`` naming the ``site``:
  the store (in the cloud, where the tenant's API requests go) asks that site's cache for the
  topic's tenant and hands the answer on. A tenant never sees another tenant's refs, nor the
  bytes they take: its ``used_bytes`` is what its own refs take in that cache.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from fogmesh.protocol._ids import Ident
from fogmesh.protocol._model import Model
from fogmesh.protocol.artefacts import ArtefactKind, ArtefactRef
from fogmesh.protocol.envelope import Reply, Request

__all__ = [
    "CACHE_STATUS_ACTION",
    "CACHE_STATUS_VERB",
    "CachePull",
    "CacheStatus",
    "CacheStatusRequest",
    "CachedArtefact",
]

CACHE_STATUS_VERB = "status"
"""The verb of ``fm/v1/ops/cache-{site}/status`` (operators)."""
CACHE_STATUS_ACTION = "cache-status"
"""The action of ``fm/v1/api/{tenant}/artefacts/cache-status`` (a tenant, through the store)."""


class CacheStatusRequest(Request):
    """What a site's cache holds.

    On ``fm/v1/ops/cache-{site}/status`` the envelope's ``tenant``, if set, keeps the answer to
    that tenant's refs, and ``site``, if set, must be the cache's own. On the store's
    ``artefacts/cache-status`` ``site`` is required and the tenant is the topic's.
    """

    site: Ident | None = Field(default=None, description="the site whose cache is asked")


class CachedArtefact(Model):
    """One artefact a cache holds, complete and verified."""

    model_config = ConfigDict(extra="forbid")

    ref: ArtefactRef
    name: str = ""
    kind: ArtefactKind = ArtefactKind.FILE
    size: int = Field(ge=0)
    tenants: list[Ident] = Field(
        default_factory=list, description="who the cache admitted for it (a tenant: itself)"
    )
    last_used: float = Field(default=0.0, description="unix time it was last served or cached")


class CachePull(Model):
    """An artefact the cache is pulling from the store now."""

    model_config = ConfigDict(extra="forbid")

    ref: ArtefactRef
    size: int = Field(ge=0)
    offset: int = Field(ge=0, description="the bytes pulled so far")
    tenants: list[Ident] = Field(default_factory=list)


class CacheStatus(Reply):
    """A site cache's artefacts (most recently used first), its pulls in progress, and the
    bytes it uses of its ``max_bytes`` (for a tenant: what that tenant's refs take)."""

    site: Ident
    artefacts: list[CachedArtefact] = Field(default_factory=list)
    pulls: list[CachePull] = Field(default_factory=list)
    used_bytes: int = Field(ge=0)
    max_bytes: int = Field(gt=0)
