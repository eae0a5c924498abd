"""The artefact store (cloud): tenants push chunks on ``fm/v1/api/{tenant}/artefacts/{action}``,
site caches read on ``fm/v1/ops/artefacts/{verb}`` (protocol: :mod:`fogmesh.protocol.artefacts`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii

import structlog

from fogmesh.artefacts.blobs import BlobStore, Entry, file_digest
from fogmesh.artefacts.cache_status import CacheStatusRelay
from fogmesh.artefacts.config import StoreConfig
from fogmesh.bus import Action, Bus, MessageContext, Refusal, RequestRouter, reply_allowed
from fogmesh.protocol import ErrorCode, topics
from fogmesh.protocol.artefacts import (
    ARTEFACTS_DUTY,
    ARTEFACTS_RESOURCE,
    CHUNK_BYTES,
    ArtefactAction,
    ArtefactInfo,
    ArtefactList,
    ChunkData,
    DeleteArtefact,
    ListArtefacts,
    PushChunk,
    PushStatus,
    ReadChunk,
    StatArtefact,
    StoreVerb,
    UploadInfo,
    chunk_digest,
    chunk_frame,
    ref_digest,
    ref_of,
)
from fogmesh.protocol.cache_status import CACHE_STATUS_ACTION, CacheStatusRequest

__all__ = ["StoreService"]

log = structlog.get_logger("fogmesh.artefacts")


def _not_found(ref: str) -> Refusal:
    # The same words whether the artefact is absent or another tenant's.
    return Refusal(ErrorCode.NOT_FOUND, f"no artefact {ref}")


class StoreService:
    """The store; ``run`` serves until cancelled."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.blobs = BlobStore(config.data_dir)
        self.ready = asyncio.Event()
        self.api = RequestRouter(
            topics.api_filter(ARTEFACTS_RESOURCE),
            {
                ArtefactAction.PUSH.value: Action(PushChunk, self._push),
                ArtefactAction.LIST.value: Action(ListArtefacts, self._list),
                ArtefactAction.DELETE.value: Action(DeleteArtefact, self._delete),
                CACHE_STATUS_ACTION: Action(
                    CacheStatusRequest, CacheStatusRelay().answer, background=True
                ),
            },
            what="artefacts action",
            rate_per_s=500.0,  # a push is many chunk requests in a row
            burst=1000.0,
        )
        self.ops = RequestRouter(
            topics.ops_filter(ARTEFACTS_DUTY),
            {
                StoreVerb.STAT.value: Action(StatArtefact, self._stat),
                StoreVerb.READ.value: Action(ReadChunk, self._read),
            },
            what="artefact store verb",
            rate_per_s=1000.0,
            burst=2000.0,
        )

    async def run(self) -> None:
        """Serve until cancelled."""
        async with Bus(self.config.bus_config()) as bus:
            self.api.attach(bus)
            self.ops.attach(bus)
            await bus.wait_connected(timeout=None)
            self.ready.set()
            log.info("artefact store serving", data_dir=str(self.config.data_dir))
            async with asyncio.TaskGroup() as group:
                group.create_task(self._sweep_loop())

    async def _sweep_loop(self) -> None:
        """Drop idle uploads now and then (they count against their tenant's quota)."""
        while True:
            dropped = await asyncio.to_thread(self.blobs.expire_uploads, self.config.upload_ttl_s)
            if dropped:
                log.info("idle uploads dropped", count=dropped)
            await asyncio.sleep(self.config.sweep_s)

    # -- tenants ------------------------------------------------------------------------------

    @staticmethod
    def _tenant(ctx: MessageContext) -> str:
        tenant = ctx.ref.tenant if ctx.ref is not None else None
        if tenant is None:  # pragma: no cover -- the filter is an API topic
            raise Refusal(ErrorCode.INVALID_REQUEST, "artefacts are asked for under api/{tenant}")
        return tenant

    def _status(self, push: PushChunk, tenant: str, offset: int, complete: bool) -> PushStatus:
        return PushStatus.to(
            push,
            tenant=tenant,
            ref=ref_of(push.sha256_total),
            next_offset=offset,
            size=push.size,
            complete=complete,
            chunk_bytes=CHUNK_BYTES,
            quota_bytes=self.config.quota(tenant),
            used_bytes=self.blobs.used(tenant),
        )

    async def _push(self, push: PushChunk, ctx: MessageContext) -> None:
        tenant = self._tenant(ctx)
        digest = push.sha256_total
        blobs = self.blobs
        if blobs.held_by(digest, tenant) is not None:
            await ctx.reply(self._status(push, tenant, push.size, complete=True))
            return
        upload = blobs.upload(tenant, digest)
        if not upload.exists():
            quota = self.config.quota(tenant)
            used = blobs.used(tenant)
            if used + push.size > quota:
                raise Refusal(
                    ErrorCode.QUOTA_EXCEEDED,
                    f"{push.size} bytes more would exceed the quota of {quota} bytes ({used} used)",
                    details={"quota_bytes": quota, "used_bytes": used},
                )
        offset = blobs.upload_offset(tenant, digest, push.size)
        if push.data_b64:
            offset = self._take_chunk(push, tenant, offset)
        if offset < push.size:
            await ctx.reply(self._status(push, tenant, offset, complete=False))
            return
        await asyncio.to_thread(self._finish, push, tenant)
        await ctx.reply(self._status(push, tenant, push.size, complete=True))

    def _take_chunk(self, push: PushChunk, tenant: str, offset: int) -> int:
        """Append the chunk if it is the one needed next and intact; the offset needed next."""
        if push.offset != offset:
            return offset  # not written: the reply names the offset the store needs
        try:
            data = base64.b64decode(push.data_b64, validate=True)
        except binascii.Error as exc:
            raise Refusal(ErrorCode.INVALID_PAYLOAD, f"data_b64 is not base64: {exc}") from exc
        if push.sha256 is None or chunk_digest(data) != push.sha256:
            log.warning("corrupt chunk refused", tenant=tenant, offset=push.offset)
            raise Refusal(
                ErrorCode.CONFLICT,
                f"chunk at {push.offset} does not match its sha256; send it again",
                details={"next_offset": offset},
            )
        if offset + len(data) > push.size:
            raise Refusal(ErrorCode.INVALID_REQUEST, "the chunk runs past the declared size")
        return self.blobs.append(tenant, push.sha256_total, data)

    def _finish(self, push: PushChunk, tenant: str) -> None:
        digest = push.sha256_total
        upload = self.blobs.upload(tenant, digest)
        got = file_digest(upload)
        if got != digest:
            self.blobs.drop_upload(tenant, digest)
            raise Refusal(
                ErrorCode.CONFLICT,
                f"the upload's sha256 is {got}, not {digest}; push it again",
                details={"next_offset": 0},
            )
        self.blobs.upload(tenant, digest).with_suffix(".size").unlink(missing_ok=True)
        self.blobs.add_file(digest, upload)
        self.blobs.claim(digest, tenant, Entry(size=push.size, kind=push.kind, name=push.name))
        log.info("artefact stored", tenant=tenant, ref=ref_of(digest), size=push.size)

    def _listing(self, request: ListArtefacts | DeleteArtefact, tenant: str) -> ArtefactList:
        infos = [
            ArtefactInfo.to(
                request,
                tenant=tenant,
                ref=ref_of(digest),
                name=entry.name,
                kind=entry.kind,
                size=entry.size,
                created=entry.owners[tenant],
            )
            for digest, entry in self.blobs.of_tenant(tenant)
        ]
        return ArtefactList.to(
            request,
            tenant=tenant,
            artefacts=infos,
            uploads=self._uploads(tenant),
            used_bytes=self.blobs.used(tenant),
            quota_bytes=self.config.quota(tenant),
        )

    def _uploads(self, tenant: str) -> list[UploadInfo]:
        found = []
        for digest, size in self.blobs.uploads_of(tenant):
            try:
                stat = self.blobs.upload(tenant, digest).stat()
            except FileNotFoundError:
                continue
            found.append(
                UploadInfo(
                    ref=ref_of(digest), size=size, next_offset=stat.st_size, updated=stat.st_mtime
                )
            )
        return sorted(found, key=lambda u: -u.updated)

    async def _list(self, request: ListArtefacts, ctx: MessageContext) -> None:
        await ctx.reply(self._listing(request, self._tenant(ctx)))

    async def _delete(self, request: DeleteArtefact, ctx: MessageContext) -> None:
        tenant = self._tenant(ctx)
        if not self.blobs.release(ref_digest(request.ref), tenant):
            raise _not_found(request.ref)
        log.info("artefact released", tenant=tenant, ref=request.ref)
        await ctx.reply(self._listing(request, tenant))

    # -- caches -------------------------------------------------------------------------------

    async def _stat(self, request: StatArtefact, ctx: MessageContext) -> None:
        entry = self.blobs.held_by(ref_digest(request.ref), request.tenant)
        if entry is None:
            raise _not_found(request.ref)
        await ctx.reply(
            ArtefactInfo.to(
                request,
                ref=request.ref,
                name=entry.name,
                kind=entry.kind,
                size=entry.size,
                created=entry.owners[request.tenant],
            )
        )

    async def _read(self, request: ReadChunk, ctx: MessageContext) -> None:
        digest = ref_digest(request.ref)
        if not self.blobs.has(digest):
            raise _not_found(request.ref)
        data = await asyncio.to_thread(self.blobs.read, digest, request.offset, request.length)
        header = ChunkData.to(
            request, ref=request.ref, offset=request.offset, sha256=chunk_digest(data)
        )
        if not request.binary:
            await ctx.reply(header.model_copy(update={"data_b64": base64.b64encode(data).decode()}))
            return
        reply_to = request.reply_to
        if reply_to is None or not reply_allowed(ctx.topic, reply_to):
            log.warning("binary chunk not sent: reply_to refused", reply_to=reply_to)
            return
        await ctx.bus.publish_raw(reply_to, chunk_frame(header, data), qos=1)
