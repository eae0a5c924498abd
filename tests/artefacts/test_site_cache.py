"""Apps over the mesh: pushed once to the cloud's store, cached at the site, run by its nodes.

One fleet (``conftest.Fleet``): a tenant pushes a 1 MB ``.tar`` app to the store through the
cloud broker; two native agents of the site are given a workload naming its ref, and both run
it while the bytes crossed the WAN once (what the site's cache read from the store); another
tenant's workload naming that ref fails to prepare (and nobody may ask in a node's name);
then the WAN is cut (the cloud broker is gone) and a third node of the site still deploys the
app from the site's cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fogmesh.bus import Bus
from fogmesh.cli.artefacts import Pusher
from fogmesh.protocol import ActualState, ErrorCode, RemoteError, WorkloadPhase, topics
from fogmesh.protocol.artefacts import (
    FETCH_VERB,
    ArtefactKind,
    FetchArtefact,
    FetchReady,
    cache_duty,
)
from tests.agent.support import Probe, wait_for
from tests.artefacts.conftest import (
    NODES,
    OTHER,
    SITE,
    TENANT,
    Fleet,
    app_workload,
    desire,
    running,
)


def _phase(box: list[ActualState], name: str) -> tuple[WorkloadPhase | None, bool]:
    """The workload's phase, and whether its reason is the store's refusal."""
    for w in box[-1].workloads if box else []:
        if w.name == name:
            return w.phase, "no artefact" in w.reason
    return None, False


async def _deploy(bus: Bus, node: str, ref: str) -> None:
    await desire(bus, node, 1, app_workload("shop-app-0", ref))


async def test_pushed_app_runs_on_two_nodes_crossing_the_wan_once_and_deploys_when_cut(
    fleet: Fleet, cloud_bus: Bus, site_bus: Bus, tar_file: Path
) -> None:
    status = await Pusher(cloud_bus, TENANT, tar_file, kind=ArtefactKind.APP).run()
    assert status.complete
    ref, size = status.ref, tar_file.stat().st_size
    probe = Probe(site_bus)
    nodes = list(NODES[:2])
    boxes = {n: probe.watch(topics.node(n, "actual"), ActualState) for n in nodes}
    for node in nodes:
        fleet.agent(node)
        await _deploy(site_bus, node, ref)
    await wait_for(
        lambda: all(running(boxes[n], "shop-app-0") for n in nodes),
        timeout=90,
        what="the pushed app running on both nodes",
    )
    assert fleet.cache.pulled_bytes == size  # the WAN carried it once, for both nodes
    for agent in fleet.agents:
        assert (agent.state_dir / ".blobs" / ref.removeprefix("sha256:")).is_file()

    # another tenant's workload naming the ref fails to prepare: the store says it holds none
    theirs = app_workload("copy-app-0", ref, OTHER, "copy")
    await desire(site_bus, nodes[1], 2, app_workload("shop-app-0", ref), theirs)
    await wait_for(
        lambda: _phase(boxes[nodes[1]], "copy-app-0") == (WorkloadPhase.FAILED, True),
        timeout=60,
        what="another tenant's use of the ref refused",
    )
    assert fleet.cache.pulled_bytes == size
    # nor may anyone ask in a node's name: the answer goes only to the node it names
    forged = FetchArtefact(ref=ref, tenant=TENANT, node=nodes[0])
    ask = topics.ops(cache_duty(SITE), FETCH_VERB)
    with pytest.raises(RemoteError) as refused:
        await site_bus.request(ask, forged, FetchReady, timeout=30)
    assert refused.value.code is ErrorCode.UNAUTHORISED

    fleet.cloud.kill()  # the WAN is cut: the store is out of reach
    third = NODES[2]
    box = probe.watch(topics.node(third, "actual"), ActualState)
    fleet.agent(third)
    await _deploy(site_bus, third, ref)
    await wait_for(
        lambda: running(box, "shop-app-0"), timeout=90, what="the cached app on a third node"
    )
    assert fleet.cache.pulled_bytes == size
