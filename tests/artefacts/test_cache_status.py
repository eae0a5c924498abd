"""What a site's cache holds, asked the two documented ways (docs/artefacts.md, "What a cache
holds"): an operator on ``fm/v1/ops/cache-{site}/status`` sees every ref with every tenant
holding it; a tenant on ``fm/v1/api/{tenant}/artefacts/cache-status`` (through the store, in
the cloud) sees only its own refs, never another tenant's; bad requests get error replies; a
pull in progress shows its offset; the store's list names a tenant's unfinished upload."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from fogmesh.artefacts.blobs import Entry
from fogmesh.bus import Bus, MessageContext, RawMessage
from fogmesh.cli.artefacts import Pusher
from fogmesh.protocol import ErrorCode, RemoteError, RequestTimeout, topics
from fogmesh.protocol.artefacts import (
    ARTEFACTS_RESOURCE,
    CHUNK_BYTES,
    ArtefactAction,
    ArtefactKind,
    ArtefactList,
    ListArtefacts,
    PushChunk,
    PushStatus,
    cache_duty,
    chunk_digest,
    ref_digest,
)
from fogmesh.protocol.cache_status import (
    CACHE_STATUS_ACTION,
    CACHE_STATUS_VERB,
    CacheStatus,
    CacheStatusRequest,
)
from tests.artefacts.conftest import (
    OTHER,
    SITE,
    TENANT,
    Fleet,
    app_tar,
    app_workload,
    bus_to,
    desire,
)

OPS_STATUS = topics.ops(cache_duty(SITE), CACHE_STATUS_VERB)


async def _tenant_status(bus: Bus, tenant: str, site: str | None = SITE) -> CacheStatus:
    return await bus.request(
        topics.api(tenant, ARTEFACTS_RESOURCE, CACHE_STATUS_ACTION),
        CacheStatusRequest(site=site),
        CacheStatus,
        timeout=30,
    )


async def _once_linked(bus: Bus) -> CacheStatus:
    """The tenant's view of the site, asked until the site's cache answers through the link."""
    for _ in range(6):
        try:
            return await _tenant_status(bus, TENANT)
        except RemoteError as exc:
            if exc.code is not ErrorCode.UNAVAILABLE:
                raise
    return await _tenant_status(bus, TENANT)


async def _push(bus: Bus, tenant: str, path: Path) -> str:
    status = await Pusher(bus, tenant, path, kind=ArtefactKind.APP).run()
    assert status.complete
    return status.ref


async def test_operator_sees_everything_and_each_tenant_only_its_own(
    fleet: Fleet, cloud_bus: Bus, site_bus: Bus, tmp_path: Path
) -> None:
    mine, theirs = tmp_path / "shop.tar", tmp_path / "copy.tar"
    mine.write_bytes(app_tar(64 << 10))
    theirs.write_bytes(b"small" * 100)  # within the other tenant's 4 KiB quota
    async with Bus(bus_to(fleet.cloud_port, OTHER)) as other_bus:
        await other_bus.wait_connected(timeout=20)
        ref = await _push(cloud_bus, TENANT, mine)
        other_ref = await _push(other_bus, OTHER, theirs)

        # nothing cached yet: a tenant's view of the site is empty, not an error (once the WAN
        # link is up: until then the store answers that the site's cache does not answer)
        empty = await _once_linked(cloud_bus)
        assert (empty.site, empty.artefacts, empty.used_bytes) == (SITE, [], 0)

        # a node of the site runs a workload of each tenant: the cache pulls both refs
        node = "edge-1"
        await desire(
            site_bus,
            node,
            1,
            app_workload("shop-app-0", ref),
            app_workload("copy-app-0", other_ref, OTHER, "copy"),
        )
        fleet.agent(node)

        async def operator_view() -> CacheStatus:
            return await cloud_bus_op.request(
                OPS_STATUS, CacheStatusRequest(), CacheStatus, timeout=30
            )

        async with Bus(bus_to(fleet.cloud_port)) as cloud_bus_op:  # an operator, at the cloud
            await cloud_bus_op.wait_connected(timeout=20)
            seen: list[CacheStatus] = []

            async def both_cached() -> bool:
                seen.append(await operator_view())
                return {a.ref for a in seen[-1].artefacts} == {ref, other_ref}

            for _ in range(90):
                if await both_cached():
                    break
                await asyncio.sleep(1)
            everything = seen[-1]
            assert {a.ref for a in everything.artefacts} == {ref, other_ref}, everything
            held = {a.ref: a for a in everything.artefacts}
            assert held[ref].tenants == [TENANT]
            assert held[other_ref].tenants == [OTHER]
            assert held[ref].size == mine.stat().st_size
            assert held[ref].kind is ArtefactKind.APP
            assert held[ref].name == "shop.tar"
            assert held[ref].last_used > 0
            sizes = mine.stat().st_size + theirs.stat().st_size
            assert everything.used_bytes == sizes
            assert everything.max_bytes == fleet.cache.config.max_bytes
            assert everything.pulls == []

            # an operator may narrow it to one tenant
            narrowed = await cloud_bus_op.request(
                OPS_STATUS, CacheStatusRequest(tenant=OTHER), CacheStatus, timeout=30
            )
            assert [a.ref for a in narrowed.artefacts] == [other_ref]

            # the wrong site's name is refused by the cache
            with pytest.raises(RemoteError) as wrong:
                await cloud_bus_op.request(
                    OPS_STATUS, CacheStatusRequest(site="site-z"), CacheStatus, timeout=30
                )
            assert wrong.value.code is ErrorCode.INVALID_REQUEST

        # each tenant, through the store: only its own refs, its own bytes
        view = await _tenant_status(cloud_bus, TENANT)
        assert [(a.ref, a.tenants) for a in view.artefacts] == [(ref, [TENANT])]
        assert view.used_bytes == mine.stat().st_size
        other_view = await _tenant_status(other_bus, OTHER)
        assert [(a.ref, a.tenants) for a in other_view.artefacts] == [(other_ref, [OTHER])]
        assert ref not in json.dumps(other_view.model_dump(mode="json"))

        # a tenant cannot ask a site's cache itself (the broker drops the publish: no answer)
        with pytest.raises(RequestTimeout):
            await other_bus.request(
                OPS_STATUS, CacheStatusRequest(tenant=TENANT), CacheStatus, timeout=3
            )


async def test_bad_requests_get_error_replies(fleet: Fleet, cloud_bus: Bus) -> None:
    with pytest.raises(RemoteError) as no_site:
        await _tenant_status(cloud_bus, TENANT, site=None)
    assert no_site.value.code is ErrorCode.INVALID_REQUEST
    assert "site" in no_site.value.error.message

    # a site with no cache: the store says so, in its own time
    with pytest.raises(RemoteError) as absent:
        await _tenant_status(cloud_bus, TENANT, site="site-nowhere")
    assert absent.value.code is ErrorCode.UNAVAILABLE

    # a field the model does not know: invalid_payload naming it
    raw = {
        "correlation_id": "c-1",
        "reply_to": topics.reply(TENANT, "probe"),
        "site": SITE,
        "sites": ["x"],
    }
    got: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def keep(message: RawMessage, _ctx: MessageContext) -> None:
        await got.put(json.loads(message.payload))

    cloud_bus.subscribe(topics.reply(TENANT, "probe"), RawMessage, keep)
    await asyncio.sleep(0.5)
    await cloud_bus.publish_raw(
        topics.api(TENANT, ARTEFACTS_RESOURCE, CACHE_STATUS_ACTION), json.dumps(raw).encode()
    )
    answer = await asyncio.wait_for(got.get(), timeout=30)
    assert answer["ok"] is False
    assert answer["error"]["code"] == ErrorCode.INVALID_PAYLOAD.value  # type: ignore[index]
    assert "sites" in json.dumps(answer)


async def test_a_pull_in_progress_shows_its_offset(fleet: Fleet, site_bus: Bus) -> None:
    cache = fleet.cache
    data = app_tar(300 << 10)
    digest = chunk_digest(data)
    part = cache.pulls / digest
    part.write_bytes(data[:CHUNK_BYTES])
    cache.blobs.index[digest] = Entry(size=len(data), kind=ArtefactKind.APP, owners={TENANT: 1.0})
    lock = cache._pulling.setdefault(digest, asyncio.Lock())
    async with lock:  # as _pull holds it while it reads from the store
        status = await site_bus.request(OPS_STATUS, CacheStatusRequest(), CacheStatus, timeout=30)
        theirs = await site_bus.request(
            OPS_STATUS, CacheStatusRequest(tenant=OTHER), CacheStatus, timeout=30
        )
    assert [(p.ref, p.offset, p.size, p.tenants) for p in status.pulls] == [
        (f"sha256:{digest}", CHUNK_BYTES, len(data), [TENANT])
    ]
    assert status.artefacts == []
    assert theirs.pulls == []


async def test_the_list_names_an_unfinished_upload_with_its_offset(
    fleet: Fleet, cloud_bus: Bus
) -> None:
    data = bytes(range(256)) * 1024 * 2  # 512 KiB: four chunks
    digest = chunk_digest(data)
    push = topics.api(TENANT, ARTEFACTS_RESOURCE, ArtefactAction.PUSH)
    first = data[:CHUNK_BYTES]
    status = await cloud_bus.request(
        push,
        PushChunk(
            name="big.bin",
            size=len(data),
            sha256_total=digest,
            offset=0,
            data_b64=base64.b64encode(first).decode(),
            sha256=chunk_digest(first),
        ),
        PushStatus,
        timeout=30,
    )
    assert status.next_offset == CHUNK_BYTES
    listing = await cloud_bus.request(
        topics.api(TENANT, ARTEFACTS_RESOURCE, ArtefactAction.LIST),
        ListArtefacts(),
        ArtefactList,
        timeout=30,
    )
    assert [(ref_digest(u.ref), u.size, u.next_offset) for u in listing.uploads] == [
        (digest, len(data), CHUNK_BYTES)
    ]
    assert listing.artefacts == []
