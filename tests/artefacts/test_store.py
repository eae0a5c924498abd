"""The store on its own: chunked, checked, resumable pushes, quotas, tenant scope."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fogmesh.artefacts import BlobStore, StoreConfig, StoreService
from fogmesh.bus import Bus
from fogmesh.cli.artefacts import Pusher
from fogmesh.protocol import ErrorCode, RemoteError, topics
from fogmesh.protocol.artefacts import (
    ARTEFACTS_DUTY,
    ARTEFACTS_RESOURCE,
    CHUNK_BYTES,
    ArtefactAction,
    ArtefactInfo,
    ArtefactList,
    DeleteArtefact,
    ListArtefacts,
    StatArtefact,
    StoreVerb,
)
from tests.artefacts.conftest import OTHER, TENANT, app_tar
from tests.support.brokers import BrokerProcess
from tests.support.buses import bus_config, unique


class Interrupted(Exception):
    """Raised by a progress callback to cut a push off."""


@pytest.fixture
async def store(amqtt_broker: BrokerProcess, tmp_path: Path) -> AsyncIterator[StoreService]:
    config = StoreConfig(
        broker={"port": amqtt_broker.port, "username": "store"},
        client_id=unique("store"),
        data_dir=tmp_path / "store",
        quotas={OTHER: 100_000},
    )
    service = StoreService(config)
    task = asyncio.create_task(service.run())
    async with asyncio.timeout(20):
        await service.ready.wait()
    yield service
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def bus(amqtt_broker: BrokerProcess, store: StoreService) -> AsyncIterator[Bus]:
    async with Bus(bus_config(amqtt_broker)) as bus:
        await bus.wait_connected(timeout=20)
        yield bus


async def test_interrupted_push_resumes_and_a_corrupt_chunk_is_sent_again(
    bus: Bus, store: StoreService, tmp_path: Path
) -> None:
    """A push cut off after two chunks resumes at the store's offset; a chunk spoilt on the
    way is refused and sent again; the stored blob is the file, byte for byte."""
    path = tmp_path / "app.tar"
    path.write_bytes(app_tar(1 << 20))

    def cut(done: int, _total: int) -> None:
        if done >= 2 * CHUNK_BYTES:
            raise Interrupted

    first = Pusher(bus, TENANT, path, progress=cut)
    with pytest.raises(Interrupted):
        await first.run()
    seen: list[int] = []
    spoilt: set[int] = set()

    def corrupt(offset: int, data: bytes) -> bytes:
        if offset == 3 * CHUNK_BYTES and offset not in spoilt:
            spoilt.add(offset)
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    second = Pusher(bus, TENANT, path, progress=lambda d, _t: seen.append(d), corrupt=corrupt)
    status = await second.run()
    assert status.complete
    assert seen[0] == 2 * CHUNK_BYTES  # resumed, not started again
    assert second.resent == 1
    digest = status.ref.removeprefix("sha256:")
    assert store.blobs.blob(digest).read_bytes() == path.read_bytes()
    again = await Pusher(bus, TENANT, path).run()  # a second push of the same file is done
    assert again.complete
    assert again.used_bytes == path.stat().st_size


async def test_tenant_scope_quota_list_and_delete(bus: Bus, tmp_path: Path) -> None:
    """Another tenant neither sees nor reaches an artefact; a push over the quota is refused;
    a deleted artefact is gone."""
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 4096)
    ref = (await Pusher(bus, TENANT, small).run()).ref
    stat = topics.ops(ARTEFACTS_DUTY, StoreVerb.STAT.value)
    info = await bus.request(stat, StatArtefact(ref=ref, tenant=TENANT), ArtefactInfo)
    assert info.size == 4096
    with pytest.raises(RemoteError) as refused:
        await bus.request(stat, StatArtefact(ref=ref, tenant=OTHER), ArtefactInfo)
    assert refused.value.code is ErrorCode.NOT_FOUND
    listing = await bus.request(
        topics.api(OTHER, ARTEFACTS_RESOURCE, ArtefactAction.LIST), ListArtefacts(), ArtefactList
    )
    assert listing.artefacts == []

    big = tmp_path / "big.bin"
    big.write_bytes(b"y" * 200_000)
    with pytest.raises(RemoteError) as over:
        await Pusher(bus, OTHER, big).run()
    assert over.value.code is ErrorCode.QUOTA_EXCEEDED

    delete = topics.api(TENANT, ARTEFACTS_RESOURCE, ArtefactAction.DELETE)
    with pytest.raises(RemoteError):  # not the other tenant's to delete
        await bus.request(
            topics.api(OTHER, ARTEFACTS_RESOURCE, ArtefactAction.DELETE),
            DeleteArtefact(ref=ref),
            ArtefactList,
        )
    left = await bus.request(delete, DeleteArtefact(ref=ref), ArtefactList)
    assert left.artefacts == []
    with pytest.raises(RemoteError):
        await bus.request(stat, StatArtefact(ref=ref, tenant=TENANT), ArtefactInfo)


def test_idle_uploads_are_swept_and_free_the_quota(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "store")
    digest = "ab" * 32
    blobs.upload_offset(TENANT, digest, 1000)
    blobs.append(TENANT, digest, b"x" * 10)
    assert blobs.used(TENANT) == 1000
    assert blobs.expire_uploads(3600) == 0  # fresh: kept
    old = time.time() - 7200
    os.utime(blobs.upload(TENANT, digest), (old, old))
    assert blobs.expire_uploads(3600) == 1
    assert blobs.used(TENANT) == 0


async def test_fogmesh_push_prints_the_ref(
    amqtt_broker: BrokerProcess, bus: Bus, tmp_path: Path
) -> None:
    """``fogmesh push FILE`` (the command as a user runs it) shows its progress and prints the
    ref, which the tenant's listing names."""
    path = tmp_path / "app.tar"
    path.write_bytes(app_tar(300_000))
    env = {**os.environ, "FOGMESH_BROKER": f"127.0.0.1:{amqtt_broker.port}"}
    env |= {"FOGMESH_TENANT": TENANT, "FOGMESH_USERNAME": TENANT}
    base = [sys.executable, "-m", "fogmesh.cli", "--timeout", "30"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )

    pushed = await asyncio.to_thread(run, "push", str(path), "--kind", "app")
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    ref = pushed.stdout.strip()
    assert ref == f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    assert "push app.tar" in pushed.stderr  # the progress bar
    listing = await bus.request(
        topics.api(TENANT, ARTEFACTS_RESOURCE, ArtefactAction.LIST), ListArtefacts(), ArtefactList
    )
    assert [(a.ref, a.name, a.kind.value) for a in listing.artefacts] == [(ref, "app.tar", "app")]
