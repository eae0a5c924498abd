"""Bursts of concurrent QoS 1 publishes at the site while the cloud is down; all of them arrive.

Regression: amqtt PUBACKs an incoming QoS 1 message as soon as it is queued on the publisher's
session and broadcasts it later; when the publisher disconnected right after a burst, every
message the broadcast had not reached yet was dropped (acknowledged, then lost: ~30 % of a
6,000-message run never reached the link). Publishing one at a time hid it, because the
broadcast kept up. Duplicates are allowed (QoS 1 is at least once), losses are not.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import aiomqtt

from tests.support.mesh import MeshProcess, cloud_killed
from tests.support.mqtt import client, collect, wait_for

N = 5000
BURST = 100


def _numbers(msgs: list[aiomqtt.Message]) -> Counter[int]:
    out: Counter[int] = Counter()
    for m in msgs:
        if isinstance(m.payload, bytes) and m.payload.startswith(b"m-"):
            out[int(m.payload[2:])] += 1
    return out


async def _link_status(site: int, *, forwarded: int) -> dict[str, object]:
    """The link's retained status once it counts ``forwarded`` (it is published on change)."""
    status: dict[str, object] = {}
    async with client(site) as s:
        await s.subscribe("fm/v1/mesh/site/links/wan", qos=1)
        async with asyncio.timeout(60):
            async for msg in s.messages:
                assert isinstance(msg.payload, bytes)
                status = json.loads(msg.payload)
                if isinstance(status["forwarded"], int) and status["forwarded"] >= forwarded:
                    return status
    return status


async def test_bursts_during_partition_lose_nothing(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    got: list[aiomqtt.Message] = []
    wan = await cloud_killed(tmp_path, procs, got)
    site, cloud = wan.ports
    # every publish below returns only once the site broker acknowledged it; the client then
    # disconnects at once, while the broker may still be broadcasting the last bursts
    async with client(site) as s:
        for start in range(0, N, BURST):
            await asyncio.gather(
                *(
                    s.publish("tele/m", f"m-{i}".encode(), qos=1)
                    for i in range(start, start + BURST)
                )
            )
    await asyncio.sleep(1.0)
    wan.cloud.start()

    got.clear()
    async with client(cloud, ident="cloud-sub", clean=False) as c:
        task = asyncio.create_task(collect(c, got))
        try:
            await wait_for(
                lambda: len(_numbers(got)) >= N, timeout=90, what="every message at the cloud"
            )
        except AssertionError:
            missing = sorted(set(range(N)) - set(_numbers(got)))
            raise AssertionError(
                f"{len(missing)} of {N} acknowledged messages lost, e.g. {missing[:10]}"
            ) from None
        finally:
            task.cancel()

    counts = _numbers(got)
    assert set(counts) == set(range(N))
    duplicates = sum(counts.values()) - N  # allowed: QoS 1 is at least once
    print(f"{N} distinct messages arrived, {duplicates} duplicates")

    status = await _link_status(site, forwarded=N + 1)  # the warm-up and every burst
    assert status["dropped"] == 0
    assert status["queue_depth"] == 0
