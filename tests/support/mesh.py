"""What the tests of a site broker and a cloud broker joined by a link share: the two-broker
mesh file, and a client on each end that collects what crosses (on top of the mesh helpers of
``tests/broker/conftest.py``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from tests.broker.conftest import (
    MeshProcess,
    broker_spec,
    client,
    collect,
    eventually_delivered,
    link_spec,
    port_of,
    site_cloud_mesh,
    warm_persistent_subscriber,
    write_mesh,
)

__all__ = ["Ends", "Wan", "cloud_killed", "link_ends", "start_alone", "start_wan", "wan_mesh"]


def start_alone(tmp: Path, procs: list[MeshProcess], name: str = "hub") -> tuple[MeshProcess, int]:
    """Broker ``name`` alone in ``tmp/mesh.yaml``, started and registered in ``procs`` (killed
    after the test); the process and its port."""
    mesh = write_mesh(tmp / "mesh.yaml", {name: broker_spec(tmp, name)}, [])
    broker = MeshProcess(mesh, name).start()
    procs.append(broker)
    return broker, port_of(mesh, name)


def wan_mesh(
    tmp: Path,
    rules: list[dict[str, Any]],
    *,
    cloud: dict[str, Any] | None = None,
    remote: dict[str, Any] | None = None,
    **link: Any,
) -> Path:
    """``tmp/mesh.yaml``: brokers ``site`` and ``cloud`` joined by link ``wan``, run by the
    site with ``rules``. ``cloud``: more of the cloud's entry (its ``port``, its ``kind``...);
    ``remote``: more of the link's remote end (a relay's ``port``); ``link``: more of the link's
    entry (``drain``, ``keepalive``...)."""
    spec = link_spec("wan", "site", "cloud", rules, **link)
    spec["remote"].update(remote or {})
    brokers = {
        "site": broker_spec(tmp, "site"),
        "cloud": broker_spec(tmp, "cloud", **(cloud or {})),
    }
    return write_mesh(tmp / "mesh.yaml", brokers, [spec])


@dataclass
class Wan:
    """The ``cloud`` and ``site`` processes of a two-broker mesh file, both running."""

    mesh: Path
    cloud: MeshProcess
    site: MeshProcess

    @property
    def ports(self) -> tuple[int, int]:
        """The site broker's port and the cloud broker's."""
        return port_of(self.mesh, "site"), port_of(self.mesh, "cloud")


def start_wan(mesh: Path, procs: list[MeshProcess]) -> Wan:
    """Start ``cloud``, then ``site`` (whose link then finds the cloud up), each registered in
    ``procs`` (the ``procs`` fixture: killed after the test)."""
    cloud = MeshProcess(mesh, "cloud").start()
    procs.append(cloud)
    site = MeshProcess(mesh, "site").start()
    procs.append(site)
    return Wan(mesh, cloud, site)


async def cloud_killed(tmp: Path, procs: list[MeshProcess], got: list[aiomqtt.Message]) -> Wan:
    """The brokers of ``site_cloud_mesh`` (``tele/#`` out), a persistent cloud subscriber
    (``cloud-sub``, collecting into ``got``) the link is proven to reach, then the cloud broker
    killed (SIGKILL): what the site accepts from now on waits in the link's queue, and the
    subscriber's session must outlive the crash."""
    wan = start_wan(site_cloud_mesh(tmp), procs)
    await warm_persistent_subscriber(wan.ports[1], wan.ports[0], got)
    wan.cloud.kill()
    return wan


@dataclass
class Ends:
    """A client on each end of a link and the messages each has received."""

    near: aiomqtt.Client
    far: aiomqtt.Client
    at_near: list[aiomqtt.Message] = field(default_factory=list)
    at_far: list[aiomqtt.Message] = field(default_factory=list)

    async def out(self, topic: str, payload: bytes) -> None:
        """Publish at the near end until the far end has ``payload`` (a link may still be
        subscribing at first)."""
        await eventually_delivered(
            lambda: self.near.publish(topic, payload, qos=1),
            lambda: any(m.payload == payload for m in self.at_far),
        )

    async def back(self, topic: str, payload: bytes) -> None:
        """Publish at the far end until the near end has ``payload``."""
        await eventually_delivered(
            lambda: self.far.publish(topic, payload, qos=1),
            lambda: any(m.payload == payload for m in self.at_near),
        )


@contextlib.asynccontextmanager
async def link_ends(
    near: int, far: int, near_filters: Sequence[str], far_filters: Sequence[str]
) -> AsyncIterator[Ends]:
    """Clients of the brokers on ports ``near`` and ``far`` subscribed (QoS 1) to their
    filters, collecting what they receive for the block."""
    async with client(near) as n, client(far) as f:
        ends = Ends(n, f)
        for c, filters in ((f, far_filters), (n, near_filters)):
            for topic_filter in filters:
                await c.subscribe(topic_filter, qos=1)
        tasks = [
            asyncio.create_task(collect(f, ends.at_far)),
            asyncio.create_task(collect(n, ends.at_near)),
        ]
        try:
            yield ends
        finally:
            for task in tasks:
                task.cancel()
