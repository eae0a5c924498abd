"""Mesh brokers run as ``python -m fogmesh.broker`` processes, and the two-broker mesh the link
tests share: brokers ``site`` and ``cloud`` joined by link ``wan``, and a client on each end that
collects what crosses."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from tests.support.brokers import REPO, mesh_broker_command, wait_port, wait_ready
from tests.support.mesh_file import broker_spec, link_spec, port_of, write_mesh
from tests.support.mqtt import client, collect, eventually_delivered
from tests.support.processes import kill, terminate

__all__ = [
    "Ends",
    "MeshProcess",
    "Wan",
    "cloud_killed",
    "link_ends",
    "site_cloud_mesh",
    "start_alone",
    "start_wan",
    "wan_mesh",
    "warm_persistent_subscriber",
]


@dataclass
class MeshProcess:
    """One ``python -m fogmesh.broker run`` process that can be stopped, killed and restarted."""

    mesh: Path
    broker: str
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.mesh.parent / f"{self.broker}{''.join(self.args)}.log"

    def start(self) -> MeshProcess:
        cmd = mesh_broker_command(self.mesh, self.broker, *self.args)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        if "--no-broker" not in self.args:
            wait_port(port_of(self.mesh, self.broker), timeout=30)
        wait_ready(self.proc, self.log, self.broker)
        return self

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        code = terminate(self.proc, 20)
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: no goodbye."""
        kill(self.proc)
        self.proc = None


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


def site_cloud_mesh(tmp: Path) -> Path:
    """:func:`wan_mesh` carrying ``tele/#`` out at QoS 1."""
    return wan_mesh(tmp, [{"pattern": "tele/#", "direction": "out", "qos": 1}])


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


async def warm_persistent_subscriber(
    cloud: int, site: int, got: list[aiomqtt.Message], ident: str = "cloud-sub"
) -> None:
    """Give the cloud a persistent ``tele/#`` subscriber and prove the link carries to it.

    The subscriber disconnects afterwards; its session must keep what arrives meanwhile.
    """
    async with client(cloud, ident=ident, clean=False) as c, client(site) as s:
        await c.subscribe("tele/#", qos=1)
        task = asyncio.create_task(collect(c, got))
        await eventually_delivered(
            lambda: s.publish("tele/warmup", b"w-0", qos=1), lambda: bool(got)
        )
        task.cancel()


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
