"""A site's artefact cache: on the site broker's host, it answers its nodes'
``fm/v1/ops/cache-{site}/artefact-fetch`` and pulls what it lacks from the store over the bus,
once per artefact whatever the number of nodes asking, so the bytes cross the site's WAN link
once. Nodes download the bytes over the site's LAN from the cache's own HTTP server
(:mod:`fogmesh.artefacts.serve`), not over the bus: a reply on the site broker would be carried
back up the WAN by a link that bridges ``fm/v1/#``.

Which tenants hold an artefact is remembered beside its bytes, so a site cut off from the cloud
still serves what it has to the tenants that pulled it through here before; a tenant it has not
seen hold the artefact is asked about at the store (and refused while the store is away).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from pathlib import Path
from typing import BinaryIO

import structlog

from fogmesh.artefacts.blobs import BlobStore, Entry, file_digest
from fogmesh.artefacts.cache_status import CacheStatusDesk
from fogmesh.artefacts.config import CacheConfig
from fogmesh.artefacts.frames import ChunkReader
from fogmesh.artefacts.serve import BlobServer
from fogmesh.bus import Action, Bus, MessageContext, Refusal, RequestRouter
from fogmesh.protocol import ContractError, ErrorCode, RemoteError, RequestTimeout, topics
from fogmesh.protocol.artefacts import (
    ARTEFACTS_DUTY,
    CHUNK_BYTES,
    FETCH_VERB,
    ArtefactInfo,
    FetchArtefact,
    FetchReady,
    StatArtefact,
    StoreVerb,
    cache_duty,
    chunk_digest,
    ref_digest,
)
from fogmesh.protocol.cache_status import CACHE_STATUS_VERB, CacheStatusRequest
from fogmesh.protocol.topics import NodeChannel, TopicKind, parse_topic
from fogmesh.protocol.workload import DesiredState

__all__ = ["CacheService"]

log = structlog.get_logger("fogmesh.artefacts")

_CHUNK_TRIES = 3


class CacheService:
    """One site's cache; ``run`` serves until cancelled. ``pulled_bytes`` counts what it read
    from the store (the bytes that crossed the WAN for it)."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.blobs = BlobStore(config.data_dir)
        self.pulls = Path(config.data_dir) / "pulls"
        self.pulls.mkdir(parents=True, exist_ok=True)
        self.server = BlobServer(self.blobs, config)
        self.pulled_bytes = 0
        self.bus: Bus | None = None
        self.reader: ChunkReader | None = None
        self.ready = asyncio.Event()
        self._pulling: dict[str, asyncio.Lock] = {}
        self._wanted: dict[str, set[tuple[str, str]]] = {}
        """(tenant, ref) pairs each node's desired state names."""
        self._desired_changed = asyncio.Event()
        self.router = RequestRouter(
            topics.ops_filter(cache_duty(config.site)),
            {
                FETCH_VERB: Action(FetchArtefact, self._fetch, background=True),
                CACHE_STATUS_VERB: Action(CacheStatusRequest, CacheStatusDesk(self).answer),
            },
            what="artefact cache verb",
        )

    async def run(self) -> None:
        """Serve its nodes (bus and HTTP) until cancelled."""
        async with self.server, Bus(self.config.bus_config()) as bus:
            self.bus = bus
            self.reader = ChunkReader(bus)
            self.reader.attach()
            bus.subscribe(topics.node_filter(NodeChannel.DESIRED), DesiredState, self._on_desired)
            self.router.attach(bus)
            self.ready.set()
            log.info("artefact cache serving", site=self.config.site, url=self.server.base_url)
            await asyncio.Event().wait()

    async def _on_desired(self, desired: DesiredState, _ctx: MessageContext) -> None:
        self._wanted[desired.node] = {
            (w.tenant, ref)
            for w in desired.workloads
            for ref in (w.image_ref, w.artefact.ref if w.artefact else None)
            if ref is not None
        }
        self._desired_changed.set()
        self._desired_changed = asyncio.Event()

    async def _check_node(self, request: FetchArtefact) -> None:
        """Serve a node only refs its own desired state gives it for that tenant.

        The answer goes to ``reply_to``, whose account the broker lets only that account read,
        so a node can neither ask in another node's name nor for a ref it was not given.
        """
        try:
            where = parse_topic(request.reply_to or "")
        except (ContractError, ValueError):
            where = None
        if where is None or where.kind is not TopicKind.REPLY or where.account != request.node:
            raise Refusal(ErrorCode.UNAUTHORISED, "a fetch is answered only to the node it names")
        wanted = (request.tenant, request.ref)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.desired_wait_s):
                while wanted not in self._wanted.get(request.node, set()):
                    await self._desired_changed.wait()  # it may cross the agent's request
        if wanted not in self._wanted.get(request.node, set()):
            raise Refusal(
                ErrorCode.UNAUTHORISED,
                f"{request.node} runs no workload of {request.tenant} naming {request.ref}",
            )

    async def _fetch(self, request: FetchArtefact, ctx: MessageContext) -> None:
        await self._check_node(request)
        digest = ref_digest(request.ref)
        entry = self.blobs.held_by(digest, request.tenant)
        if entry is None:
            entry = await self._admit(request)
        if not self.blobs.has(digest):
            await self._pull(request.ref, entry)
        self.blobs.blob(digest).touch()  # least recently used goes first
        log.info("artefact served", ref=request.ref, node=request.node, tenant=request.tenant)
        await ctx.reply(
            FetchReady.to(
                request, ref=request.ref, size=entry.size, url=self.server.url_for(digest)
            )
        )

    async def _admit(self, request: FetchArtefact) -> Entry:
        """Ask the store whether ``request.tenant`` holds the artefact; remember it."""
        assert self.bus is not None
        stat = StatArtefact(ref=request.ref, tenant=request.tenant)
        try:
            info = await self.bus.request(
                topics.ops(ARTEFACTS_DUTY, StoreVerb.STAT.value),
                stat,
                ArtefactInfo,
                timeout=self.config.request_timeout_s,
            )
        except RequestTimeout as exc:
            raise Refusal(
                ErrorCode.UNAVAILABLE,
                f"the artefact store does not answer and {request.ref} is not cached for "
                f"{request.tenant}; retry once the site's link is back",
            ) from exc
        except RemoteError as exc:
            raise Refusal(exc.code, exc.error.message) from exc
        digest = ref_digest(request.ref)
        entry = Entry(size=info.size, kind=info.kind, name=info.name)
        if self.blobs.has(digest):
            return self.blobs.claim(digest, request.tenant, entry)
        self.blobs.index.setdefault(digest, entry).owners.setdefault(request.tenant, time.time())
        return self.blobs.index[digest]

    async def _pull(self, ref: str, entry: Entry) -> None:
        """Read the artefact from the store chunk by chunk (resuming a cut pull), check it and
        keep it; one pull per artefact, the other requests for it wait for that one."""
        digest = ref_digest(ref)
        lock = self._pulling.setdefault(digest, asyncio.Lock())
        async with lock:
            if self.blobs.has(digest):
                return
            part = self.pulls / digest
            part.touch()
            await self._read_into(ref, part, entry.size)
            got = await asyncio.to_thread(file_digest, part)
            if got != digest:
                part.unlink(missing_ok=True)
                raise Refusal(ErrorCode.UNAVAILABLE, f"{ref} arrived corrupt; retry")
            self.blobs.add_file(digest, part)
            owners = dict(entry.owners)
            for tenant in owners:
                self.blobs.claim(digest, tenant, entry)
            await asyncio.to_thread(self._evict, keep=digest)
            log.info("artefact cached", ref=ref, size=entry.size, site=self.config.site)

    async def _read_into(self, ref: str, part: Path, size: int) -> None:
        """Append the rest of ``ref`` to ``part``: ``pull_window`` chunks in flight (one at a
        time would leave the WAN idle for a round trip per chunk), written in order."""
        offset = await asyncio.to_thread(lambda: part.stat().st_size)
        offsets = range(offset, size, CHUNK_BYTES)
        window: deque[asyncio.Task[bytes]] = deque()
        try:
            with part.open("ab") as out:
                for at in offsets:
                    window.append(
                        asyncio.create_task(self._chunk(ref, at, min(CHUNK_BYTES, size - at)))
                    )
                    if len(window) >= self.config.pull_window:
                        self._keep(out, await window.popleft())
                while window:
                    self._keep(out, await window.popleft())
        finally:
            for task in window:
                task.cancel()

    def _keep(self, out: BinaryIO, data: bytes) -> None:
        out.write(data)
        self.pulled_bytes += len(data)

    async def _chunk(self, ref: str, offset: int, length: int) -> bytes:
        assert self.reader is not None
        for _ in range(_CHUNK_TRIES):
            try:
                header, data = await self.reader.read_bytes(
                    ref, offset, length, timeout=self.config.request_timeout_s
                )
            except RequestTimeout as exc:
                raise Refusal(
                    ErrorCode.UNAVAILABLE, f"the artefact store stopped answering at {offset}"
                ) from exc
            except RemoteError as exc:
                raise Refusal(exc.code, exc.error.message) from exc
            intact = chunk_digest(data) == header.sha256
            if header.offset == offset and len(data) == length and intact:
                return data
            log.warning("bad chunk from the store; asking again", ref=ref, offset=offset)
        raise Refusal(ErrorCode.UNAVAILABLE, f"{ref}: chunk at {offset} keeps arriving corrupt")

    def _evict(self, keep: str) -> None:
        """Drop least recently used blobs until the cache fits ``max_bytes``."""
        present = [p for p in self.blobs.blobs.iterdir() if p.is_file()]
        total = sum(p.stat().st_size for p in present)
        for path in sorted(present, key=lambda p: p.stat().st_mtime):
            if total <= self.config.max_bytes:
                break
            if path.name == keep:
                continue
            total -= path.stat().st_size
            self.blobs.forget(path.name)
            log.info("artefact evicted from the cache", ref=f"sha256:{path.name}")
