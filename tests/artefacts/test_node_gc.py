"""Nodes drop the artefacts no workload names any more (``fogmesh.agent.blob_gc``).

An agent configured with ``blob_grace_s: 0`` keeps a ref's blob while a workload names it and
drops it (and a loaded image's ``fogmesh/ref:*`` tag) once its desired state names it no more;
the collector itself keeps what is in use, frozen or young, and waits while a migration's
snapshot is staged.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from fogmesh.agent.artefact_fetch import SiteFetcher
from fogmesh.agent.blob_gc import BlobCollector, blob_collector
from fogmesh.bus import Bus
from fogmesh.cli.artefacts import Pusher
from fogmesh.protocol import ActualState, WorkloadSpec, topics
from fogmesh.protocol.artefacts import ArtefactKind
from tests.agent.support import Probe, wait_for
from tests.artefacts.conftest import NODES, TENANT, Fleet, desire, push_image, running
from tests.support.images import image_exists

GC = {"blob_grace_s": 0, "blob_sweep_s": 0.3}


async def test_a_node_drops_a_blob_its_workloads_no_longer_name(
    fleet: Fleet, cloud_bus: Bus, site_bus: Bus, tar_file: Path
) -> None:
    status = await Pusher(cloud_bus, TENANT, tar_file, kind=ArtefactKind.APP).run()
    node = NODES[0]
    box = Probe(site_bus).watch(topics.node(node, "actual"), ActualState)
    agent = fleet.agent(node, settings=GC)
    workload = {
        "name": "shop-app-0", "tenant": TENANT, "app": "shop", "component": "app",
        "runtime": "native", "artefact": {"ref": status.ref, "command_script": "run.sh"},
        "command": ["sh", "run.sh"],
    }  # fmt: skip
    await desire(site_bus, node, 1, workload)
    await wait_for(lambda: running(box, "shop-app-0"), timeout=90, what="the app running")
    blob = agent.state_dir / ".blobs" / status.ref.removeprefix("sha256:")
    assert blob.is_file()
    await asyncio.sleep(1.5)  # several sweeps with no grace: in use, it stays
    assert blob.is_file()

    await desire(site_bus, node, 2)
    await wait_for(lambda: not blob.exists(), timeout=60, what="the unused blob dropped")
    assert not blob.with_suffix(".tenants").exists()


@pytest.mark.docker
async def test_a_node_unloads_an_image_ref_no_workload_uses(
    fleet: Fleet, cloud_bus: Bus, site_bus: Bus, tmp_path: Path
) -> None:
    pushed = await push_image(cloud_bus, tmp_path)
    local = pushed.local
    node = NODES[1]
    box = Probe(site_bus).watch(topics.node(node, "actual"), ActualState)
    agent = fleet.agent(node, runtimes="docker", settings=GC)
    try:
        await desire(site_bus, node, 1, pushed.workload())
        await wait_for(lambda: running(box, "img-box-0"), timeout=120, what="the image runs")
        assert image_exists(local)
        await desire(site_bus, node, 2)
        await wait_for(lambda: not image_exists(local), timeout=90, what="the image unloaded")
        blob = agent.state_dir / ".blobs" / pushed.ref.removeprefix("sha256:")
        assert not blob.exists()
    finally:
        fleet.remove_containers()


def _blob(fetcher: SiteFetcher, byte: str, *, age: float) -> str:
    digest = byte * 64
    path = fetcher.path(f"sha256:{digest}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    path.with_suffix(".tenants").write_text(f"{TENANT}\n")
    then = time.time() - age
    os.utime(path, (then, then))
    return digest


def _spec(name: str, ref: str) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {"name": name, "tenant": TENANT, "app": "a", "component": "c", "runtime": "native",
         "artefact": {"ref": ref}}
    )  # fmt: skip


async def test_the_collector_keeps_what_is_used_frozen_young_or_migrating(
    tmp_path: Path,
) -> None:
    fetcher = SiteFetcher(tmp_path, "edge-9", "site-a", lambda: None)
    desired = _blob(fetcher, "a", age=7200)
    frozen = _blob(fetcher, "b", age=7200)  # no longer desired, still tracked (held)
    unused = _blob(fetcher, "c", age=7200)
    young = _blob(fetcher, "d", age=10)
    handover = SimpleNamespace(incoming=tmp_path / "in", outgoing=tmp_path / "out")
    agent = SimpleNamespace(
        fetcher=fetcher,
        store=SimpleNamespace(
            current=SimpleNamespace(workloads=[_spec("w1", f"sha256:{desired}")])
        ),
        reconciler=SimpleNamespace(
            tracked={"acme/w2": SimpleNamespace(spec=_spec("w2", f"sha256:{frozen}"))},
            handover=handover,
        ),
        runtimes={},
        config=SimpleNamespace(blob_grace_s=3600.0, blob_sweep_s=600.0),
    )
    collector: BlobCollector = blob_collector(cast(Any, agent))

    handover.incoming.mkdir()
    (handover.incoming / "acme%2Fw3.snap.part").write_bytes(b"state")  # a move on its way
    postponed = await collector.sweep()
    assert postponed.postponed
    assert len(fetcher.held()) == 4

    (handover.incoming / "acme%2Fw3.snap.part").unlink()
    swept = await collector.sweep()
    assert swept.blobs == [unused]
    assert fetcher.held() == sorted([desired, frozen, young])
    assert not fetcher.path(f"sha256:{unused}").with_suffix(".tenants").exists()
    # the blobs in use were stamped: their grace starts again from now
    assert time.time() - fetcher.path(f"sha256:{frozen}").stat().st_mtime < 60
