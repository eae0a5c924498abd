"""A container image pushed as ``docker save`` output runs on a node with no registry: the
agent fetches it from the site's cache, loads it with the Docker API and tags it
``fogmesh/ref:{sha256}``, the name its container is made from."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fogmesh.bus import Bus
from fogmesh.cli.artefacts import Pusher
from fogmesh.protocol import ActualState, WorkloadPhase, topics
from fogmesh.protocol.artefacts import ArtefactKind
from tests.agent.support import Probe, docker, wait_for
from tests.artefacts.conftest import NODES, TENANT, Fleet
from tests.support.images import build_busybox_image, image_exists

pytestmark = pytest.mark.docker


def _running(box: list[ActualState], name: str) -> bool:
    return bool(box) and any(
        w.name == name and w.phase is WorkloadPhase.RUNNING for w in box[-1].workloads
    )


async def test_pushed_image_runs_as_a_container_without_a_registry(
    fleet: Fleet, cloud_bus: Bus, site_bus: Bus, tmp_path: Path
) -> None:
    image = tmp_path / "image.tar"
    subprocess.run(
        ["docker", "save", "-o", str(image), build_busybox_image()], check=True, timeout=120
    )
    status = await Pusher(cloud_bus, TENANT, image, kind=ArtefactKind.IMAGE).run()
    local = f"fogmesh/ref:{status.ref.removeprefix('sha256:')}"
    if image_exists(local):  # an earlier run loaded it: this one must load it again
        docker("rmi", local)
    node = NODES[0]
    box = Probe(site_bus).watch(topics.node(node, "actual"), ActualState)
    fleet.agent(node, runtimes="docker")
    workload = {
        "name": "img-box-0",
        "tenant": TENANT,
        "app": "img",
        "component": "box",
        "runtime": "docker",
        "image_ref": status.ref,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
    }
    desired = {"node": node, "generation": 1, "workloads": [workload]}
    await site_bus.publish_raw(
        topics.node(node, "desired"), json.dumps(desired).encode(), qos=1, retain=True
    )
    try:
        await wait_for(lambda: _running(box, "img-box-0"), timeout=120, what="the image runs")
        assert image_exists(local)
        assert fleet.cache.pulled_bytes == image.stat().st_size
    finally:
        ids = docker("ps", "-aq", "--filter", f"label={fleet.run_label}", check=False).split()
        if ids:
            docker("rm", "-f", *ids, check=False)
