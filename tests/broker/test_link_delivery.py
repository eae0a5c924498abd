"""A link carries messages site->cloud and cloud->site, with prefixes, retained flags and status."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt

from fogmesh.protocol import LinkState, LinkStatus, topics
from tests.support.mesh import MeshProcess, link_ends, start_wan, wan_mesh
from tests.support.mqtt import client, wait_for

RULES = [
    {"pattern": "up/#", "direction": "out", "qos": 1},
    {"pattern": "down/#", "direction": "in", "qos": 1},
    {
        "pattern": "tele/#",
        "direction": "out",
        "qos": 1,
        "local_prefix": "",
        "remote_prefix": "sites/s1/",
    },
]


async def test_both_directions_prefix_retained_and_status(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    site, cloud = start_wan(wan_mesh(tmp_path, RULES), procs).ports
    async with link_ends(site, cloud, ["down/#"], ["up/#", "sites/#"]) as ends:
        at_cloud, at_site = ends.at_far, ends.at_near
        await ends.out("up/x", b"hello-cloud")  # site -> cloud
        await ends.back("down/y", b"hello-site")  # cloud -> site
        assert {str(m.topic) for m in at_site} == {"down/y"}
        # prefix rewrite: tele/t -> sites/s1/tele/t
        await ends.near.publish("tele/t", b"temp=20", qos=1)
        await wait_for(lambda: any(m.payload == b"temp=20" for m in at_cloud), what="prefixed")
        assert [str(m.topic) for m in at_cloud if m.payload == b"temp=20"] == ["sites/s1/tele/t"]
        # a topic no rule covers never crosses
        await ends.near.publish("private/z", b"stay", qos=1)

    # a retained message crosses and stays retained on the far side
    async with client(site) as s:
        await s.publish("up/config", b"retained-v1", qos=1, retain=True)
    got: list[aiomqtt.Message] = []

    async def retained_seen() -> bool:
        async with client(cloud) as c2:
            await c2.subscribe("up/config", qos=1)
            try:
                async with asyncio.timeout(1.0):
                    async for m in c2.messages:
                        got.append(m)
                        return bool(m.retain and m.payload == b"retained-v1")
            except TimeoutError:
                return False
        return False

    for _ in range(60):
        if await retained_seen():
            break
    else:
        raise AssertionError(f"retained message did not cross: {got}")

    # the link publishes its status, retained, on the contract's topic
    async with client(site) as s:
        await s.subscribe(topics.mesh_link("site", "wan"), qos=1)
        async with asyncio.timeout(30):
            async for m in s.messages:
                status = LinkStatus.model_validate(json.loads(bytes(m.payload)))
                assert status.broker == "site"
                assert status.link == "wan"
                if status.state == LinkState.UP:
                    break
    assert not any(m.payload == b"stay" for m in at_cloud)
