"""The artefact tests' fleet: a cloud broker and a site broker joined by a WAN link that
carries ``fm/v1/#`` both ways (as ``fogmesh up`` does), the store on the cloud, the site's cache
on the site broker (both in this process, so a test can read what crossed), and agents at the
site as child processes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from fogmesh.artefacts import CacheConfig, CacheService, StoreConfig, StoreService
from fogmesh.broker.passwords import hash_password
from fogmesh.bus import Bus, BusConfig
from fogmesh.cli.artefacts import Pusher
from fogmesh.protocol import ActualState, WorkloadPhase, topics
from fogmesh.protocol.artefacts import ArtefactKind
from tests.agent.support import AgentProc, docker, remove_native
from tests.support.buses import unique
from tests.support.images import build_busybox_image
from tests.support.mesh import MeshProcess
from tests.support.mesh_file import PASSWORDS, USERS, broker_spec, link_spec, port_of, write_mesh

SITE = "site-a"
TENANT = "acme"
OTHER = "globex"
NODES = ("edge-1", "edge-2", "edge-3")
NODE_PASSWORD = "edge-pw"
_NODE_HASH = hash_password(NODE_PASSWORD)
FLEET_USERS = [
    *USERS,
    *({"username": n, "password_hash": _NODE_HASH, "role": "node"} for n in NODES),
]


APP_SCRIPT = "#!/bin/sh\ntrap 'exit 0' TERM\nwhile true; do sleep 1; done\n"


def app_tar(size: int, script: str = APP_SCRIPT) -> bytes:
    """A native app: ``run.sh`` (runs until stopped) plus ``size`` bytes of payload."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, mode in (
            ("run.sh", script.encode(), 0o755),
            ("payload.bin", bytes(range(256)) * (size // 256), 0o644),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def app_workload(name: str, ref: str, tenant: str = TENANT, app: str = "shop") -> dict[str, Any]:
    """A native workload of ``tenant`` running ``run.sh`` of the app artefact ``ref``."""
    return {
        "name": name, "tenant": tenant, "app": app, "component": "app", "runtime": "native",
        "artefact": {"ref": ref, "command_script": "run.sh"}, "command": ["sh", "run.sh"],
    }  # fmt: skip


def node_bus(port: int, node: str) -> BusConfig:
    """A bus to a site broker as node ``node`` (its own account), as its agent connects."""
    return BusConfig(
        host="127.0.0.1",
        port=port,
        client_id=unique(f"{node}-"),
        username=node,
        password=NODE_PASSWORD,
    )


def running(box: list[ActualState], name: str) -> bool:
    """The node's latest actual state has workload ``name`` running."""
    return bool(box) and any(
        w.name == name and w.phase is WorkloadPhase.RUNNING for w in box[-1].workloads
    )


async def desire(bus: Bus, node: str, generation: int, *workloads: dict[str, Any]) -> None:
    """Publish ``node``'s desired state (retained), as the scheduler does."""
    desired = {"node": node, "generation": generation, "workloads": list(workloads)}
    await bus.publish_raw(
        topics.node(node, "desired"), json.dumps(desired).encode(), qos=1, retain=True
    )


@dataclass
class PushedImage:
    """The busybox test image pushed as ``docker save`` output."""

    ref: str
    size: int

    @property
    def local(self) -> str:
        """The tag the agent loads it under."""
        return f"fogmesh/ref:{self.ref.removeprefix('sha256:')}"

    def workload(self) -> dict[str, Any]:
        """A docker workload ``img-box-0`` made from it, running until stopped."""
        return {
            "name": "img-box-0", "tenant": TENANT, "app": "img", "component": "box",
            "runtime": "docker", "image_ref": self.ref,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
        }  # fmt: skip


async def push_image(bus: Bus, tmp_path: Path) -> PushedImage:
    """``docker save`` the busybox test image and push it as the tenant (kind image)."""
    image = tmp_path / "image.tar"
    subprocess.run(
        ["docker", "save", "-o", str(image), build_busybox_image()], check=True, timeout=120
    )
    status = await Pusher(bus, TENANT, image, kind=ArtefactKind.IMAGE).run()
    return PushedImage(status.ref, image.stat().st_size)


def bus_to(port: int, user: str = "svc") -> BusConfig:
    """A bus to a test broker as ``user`` (``svc``: a service; a tenant: its own account)."""
    return BusConfig(
        host="127.0.0.1",
        port=port,
        client_id=unique(f"{user}-"),
        username=user,
        password=PASSWORDS[user],
        reconnect_base=0.1,
        reconnect_cap=1.0,
        keepalive=5,
    )


@dataclass
class Fleet:
    """The brokers, the store and cache services, and the agents started so far."""

    root: Path
    cloud: MeshProcess
    site: MeshProcess
    store: StoreService
    cache: CacheService
    run_label: str
    agents: list[AgentProc] = field(default_factory=list)

    @property
    def cloud_port(self) -> int:
        return port_of(self.cloud.mesh, "cloud")

    @property
    def site_port(self) -> int:
        return port_of(self.site.mesh, SITE)

    def agent(
        self, node: str, runtimes: str = "native", settings: dict[str, Any] | None = None
    ) -> AgentProc:
        """Start an agent of the site (``settings``: more of its config file's keys)."""
        config = self.root / f"{node}.yaml"
        broker = {"username": node, "password": NODE_PASSWORD}
        config.write_text(yaml.safe_dump({"site": SITE, "broker": broker, **(settings or {})}))
        agent = AgentProc(
            node,
            self.site_port,
            self.root / node,
            self.run_label,
            extra=["--config", str(config), "--runtimes", runtimes],
        ).start()
        self.agents.append(agent)
        return agent

    def remove_containers(self) -> None:
        """Remove the containers the fleet's agents made."""
        ids = docker("ps", "-aq", "--filter", f"label={self.run_label}", check=False).split()
        if ids:
            docker("rm", "-f", *ids, check=False)


async def _serve(service: StoreService | CacheService) -> None:
    await service.run()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """Cloud and site brokers over a WAN link, the store, the site's cache."""
    accounts: dict[str, Any] = {"users": FLEET_USERS}
    mesh = write_mesh(
        tmp_path / "mesh.yaml",
        {
            "cloud": broker_spec(tmp_path, "cloud", **accounts),
            SITE: broker_spec(tmp_path, SITE, **accounts),
        },
        [link_spec("wan", SITE, "cloud", [{"pattern": "fm/v1/#", "direction": "both", "qos": 1}])],
    )
    cloud, site = MeshProcess(mesh, "cloud"), MeshProcess(mesh, SITE)
    # both at once: each start waits for its broker's "ready" (the link retries until the cloud
    # is up)
    await asyncio.gather(asyncio.to_thread(cloud.start), asyncio.to_thread(site.start))
    store = StoreService(
        StoreConfig(
            broker={"port": port_of(mesh, "cloud"), "username": "svc", "password": "svc-pw"},
            client_id=unique("store"),
            data_dir=tmp_path / "store",
            quotas={OTHER: 4096},
        )
    )
    cache = CacheService(
        CacheConfig(
            broker={"port": port_of(mesh, SITE), "username": "svc", "password": "svc-pw"},
            client_id=unique("cache"),
            site=SITE,
            data_dir=tmp_path / "cache",
            http_host="127.0.0.1",
            http_port=0,
            request_timeout_s=10.0,
        )
    )
    tasks = [asyncio.create_task(_serve(store)), asyncio.create_task(_serve(cache))]
    fleet = Fleet(tmp_path, cloud, site, store, cache, f"fmtest={unique('art')}")
    try:
        services: tuple[StoreService | CacheService, ...] = (store, cache)
        for service, task in zip(services, tasks, strict=True):
            waiting = asyncio.create_task(service.ready.wait())
            await asyncio.wait([waiting, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if task.done():
                task.result()  # raises what stopped the service
            assert service.ready.is_set(), f"{type(service).__name__} did not start"
        yield fleet
    finally:
        for agent in fleet.agents:
            agent.kill()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await remove_native(fleet.agents)
        site.kill()
        cloud.kill()


@pytest.fixture
async def cloud_bus(fleet: Fleet) -> AsyncIterator[Bus]:
    """The tenant's own client of the cloud broker (its CLI)."""
    async with Bus(bus_to(fleet.cloud_port, TENANT)) as bus:
        await bus.wait_connected(timeout=20)
        yield bus


@pytest.fixture
async def site_bus(fleet: Fleet) -> AsyncIterator[Bus]:
    """A client of the site broker (the scheduler's desired states, a node's questions)."""
    async with Bus(bus_to(fleet.site_port)) as bus:
        await bus.wait_connected(timeout=20)
        yield bus


@pytest.fixture
def tar_file(tmp_path: Path) -> Path:
    """A 1 MB native app."""
    path = tmp_path / "app.tar"
    path.write_bytes(app_tar(1 << 20))
    return path
