"""A container image pushed as ``docker save`` output runs on a node with no registry: the
agent fetches it from the site's cache, loads it with the Docker API and tags it
``fogmesh/ref:{sha256}``, the name its container is made from."""

from __future__ import annotations

from pathlib import Path

import pytest

from fogmesh.bus import Bus
from fogmesh.protocol import ActualState, topics
from tests.agent.support import Probe, docker, wait_for
from tests.artefacts.conftest import NODES, Fleet, desire, push_image, running
from tests.support.images import image_exists

pytestmark = pytest.mark.docker


async def test_pushed_image_runs_as_a_container_without_a_registry(
    fleet: Fleet, cloud_bus: Bus, site_bus: Bus, tmp_path: Path
) -> None:
    pushed = await push_image(cloud_bus, tmp_path)
    local = pushed.local
    if image_exists(local):  # an earlier run loaded it: this one must load it again
        docker("rmi", local)
    node = NODES[0]
    box = Probe(site_bus).watch(topics.node(node, "actual"), ActualState)
    fleet.agent(node, runtimes="docker")
    await desire(site_bus, node, 1, pushed.workload())
    try:
        await wait_for(lambda: running(box, "img-box-0"), timeout=120, what="the image runs")
        assert image_exists(local)
        assert fleet.cache.pulled_bytes == pushed.size
    finally:
        fleet.remove_containers()
