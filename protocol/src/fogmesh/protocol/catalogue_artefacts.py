"""Artefacts: the tenant's uploads to the store, the site caches' reads from it, the agents'
fetches from their site's cache and what a cache holds.

Rows of :data:`fogmesh.protocol.catalogue.CATALOGUE`, in its order."""

from __future__ import annotations

from fogmesh.protocol import artefacts, cache_status
from fogmesh.protocol.catalogue_spec import TopicSpec, request_topics
from fogmesh.protocol.envelope import ErrorReply

__all__ = ["ARTEFACTS"]

ARTEFACTS: tuple[TopicSpec, ...] = (
    *request_topics(
        "fm/v1/api/{tenant}/artefacts/",
        "users, CLI (fogmesh push), dashboards",
        "artefact store",
        (
            (
                "push",
                artefacts.PushChunk,
                artefacts.PushStatus,
                "One chunk of an upload (no data: where it stands); resumable, checked per "
                "chunk and whole, within the tenant's quota.",
            ),
            (
                "list",
                artefacts.ListArtefacts,
                artefacts.ArtefactList,
                "The tenant's artefacts and its quota.",
            ),
            (
                "delete",
                artefacts.DeleteArtefact,
                artefacts.ArtefactList,
                "Drop the tenant's hold on an artefact.",
            ),
        ),
    ),
    TopicSpec(
        "fm/v1/ops/artefacts/stat",
        artefacts.StatArtefact,
        "site artefact caches",
        "artefact store",
        1,
        False,
        "Size and name of an artefact if the tenant holds it (else not_found).",
        (artefacts.ArtefactInfo, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/artefacts/read",
        artefacts.ReadChunk,
        "site artefact caches",
        "artefact store",
        1,
        False,
        "One chunk of a stored artefact.",
        (artefacts.ChunkData, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/cache-{site}/artefact-fetch",
        artefacts.FetchArtefact,
        "node agents",
        "the site's artefact cache",
        1,
        False,
        "A ref a workload of the tenant runs: the cache pulls it from the store once and "
        "answers a one-time download URL on the site's LAN.",
        (artefacts.FetchReady, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/ops/cache-{site}/status",
        cache_status.CacheStatusRequest,
        "operators, dashboards, the artefact store (for a tenant)",
        "the site's artefact cache",
        1,
        False,
        "What the cache holds (ref, size, tenants, last use), its pulls in progress with "
        "their offset and its bytes used of max_bytes; one tenant's refs when it names one.",
        (cache_status.CacheStatus, ErrorReply),
    ),
    TopicSpec(
        "fm/v1/api/{tenant}/artefacts/cache-status",
        cache_status.CacheStatusRequest,
        "users, dashboards",
        "artefact store (asks the site's cache)",
        1,
        False,
        "The tenant's own refs in one site's cache (site) and its pulls in progress.",
        (cache_status.CacheStatus, ErrorReply),
    ),
)
