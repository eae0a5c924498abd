"""A link restarted with narrower rules on its kept sessions stops the dropped filters' traffic.

The link's sessions are persistent on both brokers, so a filter subscribed under the old rules
would stay in the far broker's session and its traffic keep crossing the WAN, to be dropped at
the link. Here the site runs its link with ``leases/#`` and ``data/#`` both ways, is stopped,
and restarts on the same data dir with ``data/#`` only: what the cloud then publishes under
``leases/`` must not cross the link's remote socket (a counting relay sits on it) while
``data/`` still crosses both ways. With an amqtt cloud (a mesh broker) and a Mosquitto one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.brokers import BrokerProcess, free_port
from tests.support.mesh import MeshProcess, link_ends, wan_mesh
from tests.support.mesh_file import port_of
from tests.support.mqtt import client
from tests.support.relay import CountingRelay

OLD = [
    {"pattern": "fm/v1/leases/#", "direction": "both", "qos": 1},
    {"pattern": "fm/v1/data/#", "direction": "both", "qos": 1},
]
NEW = [{"pattern": "fm/v1/data/#", "direction": "both", "qos": 1}]
LEASES = 50
PAYLOAD = b"x" * 200


async def ignored(site: int) -> int:
    """The link's ``ignored`` counter in its retained status at the site."""
    async with client(site) as c:
        await c.subscribe("fm/v1/mesh/site/links/wan", qos=1)
        async with asyncio.timeout(10):
            async for m in c.messages:
                assert isinstance(m.payload, bytes)
                return int(json.loads(m.payload).get("ignored", 0))
    raise AssertionError("no link status")


async def recorded(tmp: Path, side: str, want: set[str]) -> None:
    """Wait until the link has recorded ``want`` as ``side``'s filters (after its UNSUBACKs)."""
    path = tmp / "site" / "links" / "wan" / "filters.json"
    async with asyncio.timeout(20):
        while True:
            with contextlib.suppress(OSError, ValueError):
                if set(json.loads(path.read_text()).get(side, [])) == want:
                    return
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def cloud_of(kind: str, tmp: Path, procs: list[MeshProcess]) -> AsyncIterator[dict[str, Any]]:
    """The cloud broker (a mesh amqtt broker, or a plain Mosquitto): its mesh entry's extra."""
    if kind == "mosquitto":
        mosq = BrokerProcess("mosquitto", tmp / "mosq").start()
        try:
            yield {"kind": "mosquitto", "port": mosq.port}
        finally:
            mosq.stop()
    else:
        yield {"port": free_port()}


@pytest.mark.parametrize("kind", ["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
async def test_narrowed_rules_unsubscribe_the_kept_session(
    kind: str, tmp_path: Path, procs: list[MeshProcess]
) -> None:
    async with cloud_of(kind, tmp_path, procs) as cloud:
        cloud_port = int(cloud["port"])
        far_user = None if kind == "mosquitto" else "svc"
        async with CountingRelay(cloud_port) as relay:
            mesh = wan_mesh(tmp_path, OLD, cloud=cloud, remote={"port": relay.port})
            if kind != "mosquitto":
                procs.append(MeshProcess(mesh, "cloud").start())
            site = MeshProcess(mesh, "site").start()
            procs.append(site)
            site_port = port_of(mesh, "site")
            async with link_ends(site_port, cloud_port, ["fm/v1/#"], ["fm/v1/#"]) as ends:
                await ends.back("fm/v1/leases/d0", b"old-rules")  # leases cross under OLD
            await recorded(tmp_path, "remote", {"fm/v1/leases/#", "fm/v1/data/#"})

            site.stop()
            data = yaml.safe_load(mesh.read_text())
            data["links"][0]["rules"] = NEW
            mesh.write_text(yaml.safe_dump(data))
            site.start()
            # data/# is still named: never unsubscribed, it crosses both ways
            async with link_ends(site_port, cloud_port, ["fm/v1/#"], ["fm/v1/#"]) as ends:
                await ends.out("fm/v1/data/t/a/o", b"out-after")
                await ends.back("fm/v1/data/t/a/i", b"back-after")
            await recorded(tmp_path, "remote", {"fm/v1/data/#"})
            await recorded(tmp_path, "local", {"fm/v1/data/#"})

            before, down = await ignored(site_port), relay.down
            async with client(cloud_port, far_user) as c, client(site_port) as s:
                await s.subscribe("fm/v1/data/#", qos=1)
                for i in range(LEASES):
                    await c.publish(f"fm/v1/leases/d{i}", PAYLOAD, qos=1)
                await c.publish("fm/v1/data/t/a/mark", b"mark", qos=1)
                async with asyncio.timeout(20):  # published after the leases: they had their turn
                    async for m in s.messages:
                        if m.payload == b"mark":
                            break
            crossed = relay.down - down
            # the marker (about 40 bytes) and the odd status or PINGRESP; 50 leases are 11 kB
            assert crossed < LEASES * len(PAYLOAD) // 4, crossed
            assert await ignored(site_port) == before
