"""Two nodes' Docker runtimes on one engine share a tenant's network (real dockerd).

A move between such agents creates the workload on the peer while the source still removes
its copy: the source must not take the network from the peer's created (not yet attached)
container, and a container whose network vanished anyway must still start.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import pytest

from fogmesh.agent.runtime import DockerRuntime, InstanceState
from fogmesh.protocol.workload import VolumeSpec
from tests.agent_runtime.helpers import RUN_LABEL, key
from tests.agent_runtime.test_docker import docker_names, docker_spec

pytestmark = pytest.mark.docker


@pytest.fixture
async def peer_rt(run_id: str, docker_rt: DockerRuntime) -> AsyncIterator[DockerRuntime]:
    """A second node's runtime on the same engine (cleaned up by ``docker_rt``'s label)."""
    runtime = DockerRuntime(f"p-{run_id}", extra_labels={RUN_LABEL: run_id})
    try:
        yield runtime
    finally:
        await runtime.close()


def networks() -> list[str]:
    """The names of the engine's networks."""
    return docker_names("network", "ls", "--format", "{{.Name}}")


async def test_removal_keeps_network_of_peers_created_container(
    docker_rt: DockerRuntime, peer_rt: DockerRuntime, busybox: str, run_id: str
) -> None:
    """The source removes its running copy while the peer's copy is only created: the
    network stays, the peer's copy starts, and the last removal takes the network."""
    tenant = f"t{run_id}"
    spec = docker_spec("web", busybox, tenant, volumes=[VolumeSpec(name="d", mount_path="/d")])
    await docker_rt.create(spec)
    assert (await docker_rt.start(key(spec))).state is InstanceState.RUNNING
    await peer_rt.create(spec)

    await docker_rt.remove(key(spec))
    assert f"fm-{tenant}" in networks()
    assert (await peer_rt.start(key(spec))).state is InstanceState.RUNNING

    await peer_rt.remove(key(spec))
    assert f"fm-{tenant}" not in networks()


async def test_created_container_starts_after_its_network_vanished(
    docker_rt: DockerRuntime, peer_rt: DockerRuntime, busybox: str, run_id: str
) -> None:
    """The network goes between the peer's create and start (a removal that checked before
    the create): start makes it again and the container runs; a create then finds it."""
    tenant = f"t{run_id}"
    spec = docker_spec("web", busybox, tenant)
    await peer_rt.create(spec)
    subprocess.run(["docker", "network", "rm", f"fm-{tenant}"], check=True, capture_output=True)

    assert (await peer_rt.start(key(spec))).state is InstanceState.RUNNING
    assert f"fm-{tenant}" in networks()
    other = docker_spec("api", busybox, tenant)
    await docker_rt.create(other)
    assert (await docker_rt.start(key(other))).state is InstanceState.RUNNING


async def test_created_container_starts_when_its_network_went_before_the_create(
    peer_rt: DockerRuntime, busybox: str, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source's removal deletes the network between the peer's ensure and its create
    (Docker accepts a create naming a missing network): the start makes it again and the
    container runs, since the container names the network, not the deleted network's id."""
    tenant = f"t{run_id}"
    spec = docker_spec("web", busybox, tenant)
    networks_of_peer = peer_rt._networks
    ensure = networks_of_peer.ensure

    async def ensure_then_lose(name: str) -> str:
        # the race's timing, forced: a peer's removal lands right after the ensure
        found = await ensure(name)
        subprocess.run(["docker", "network", "rm", found], check=True, capture_output=True)
        return found

    monkeypatch.setattr(networks_of_peer, "ensure", ensure_then_lose)
    await peer_rt.create(spec)
    monkeypatch.setattr(networks_of_peer, "ensure", ensure)

    assert (await peer_rt.start(key(spec))).state is InstanceState.RUNNING
    assert f"fm-{tenant}" in networks()
