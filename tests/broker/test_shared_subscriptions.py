"""Shared subscriptions: each message of a ``$share/{group}/{filter}`` goes to one member.

The embedded broker (``fogmesh.broker.shared``) keeps each topic at one member while the group
stays the same and moves only a leaving member's topics; Mosquitto 2 shares round-robin, so
there only "one member per message" is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from pathlib import Path

import aiomqtt

from tests.support.brokers import BrokerProcess
from tests.support.mesh import MeshProcess, start_alone
from tests.support.mqtt import client, wait_for

SHARED = "$share/registry/fm/v1/nodes/+/heartbeat"
TOPICS = [f"fm/v1/nodes/n{i:02d}/heartbeat" for i in range(20)]
ROUND = 5  # messages per topic per round


class Member:
    """One subscriber, with what it got by topic."""

    def __init__(self, c: aiomqtt.Client) -> None:
        self.client = c
        self.got: Counter[str] = Counter()
        self.task: asyncio.Task[None] | None = None

    async def start(self, topic_filter: str) -> None:
        await self.client.__aenter__()
        await self.client.subscribe(topic_filter, qos=1)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for message in self.client.messages:
                self.got[message.topic.value] += 1

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(aiomqtt.MqttError):
            await self.client.__aexit__(None, None, None)


async def _round(pub: aiomqtt.Client) -> None:
    for _ in range(ROUND):
        for topic in TOPICS:
            await pub.publish(topic, b"{}", qos=1)


def _owners(members: list[Member], before: list[Counter[str]]) -> dict[str, set[int]]:
    """Which members got each topic since ``before``."""
    owners: dict[str, set[int]] = defaultdict(set)
    for i, (m, b) in enumerate(zip(members, before, strict=True)):
        for topic, n in (m.got - b).items():
            if n:
                owners[topic].add(i)
    return owners


async def test_embedded_broker_gives_each_topic_to_one_member(
    tmp_path: Path, procs: list[MeshProcess]
) -> None:
    port = start_alone(tmp_path, procs)[1]
    members = [Member(client(port)) for _ in range(3)]
    plain = Member(client(port))
    try:
        for m in members:
            await m.start(SHARED)
        await plain.start("fm/v1/nodes/+/heartbeat")
        total = len(TOPICS) * ROUND
        async with client(port) as pub:
            before = [Counter(m.got) for m in members]
            await _round(pub)
            await wait_for(lambda: plain.got.total() == total, 30, "the plain subscriber's copy")
            await wait_for(lambda: sum(m.got.total() for m in members) >= total, 30, "the group")
            assert sum(m.got.total() for m in members) == total  # each message to one member
            owners = _owners(members, before)
            assert all(len(o) == 1 for o in owners.values()), owners  # a topic stays put
            assert len({next(iter(o)) for o in owners.values()}) >= 2  # and topics are spread
            first = {t: next(iter(o)) for t, o in owners.items()}

            await members[0].stop()  # a member leaves: only its topics move
            before = [Counter(m.got) for m in members]
            await _round(pub)
            await wait_for(lambda: plain.got.total() == 2 * total, 30, "the second round")
            await wait_for(
                lambda: (
                    sum((m.got - b).total() for m, b in zip(members, before, strict=True)) >= total
                ),
                30,
                "the second round at the two members left",
            )
            owners = _owners(members, before)
            assert set().union(*owners.values()) <= {1, 2}
            assert all(len(o) == 1 for o in owners.values()), owners
            for topic, owner in first.items():
                if owner != 0:
                    assert owners[topic] == {owner}, topic
    finally:
        for m in [*members, plain]:
            await m.stop()


async def test_mosquitto_gives_each_message_to_one_member(
    mosquitto_broker: BrokerProcess,
) -> None:
    port = mosquitto_broker.port
    members = [Member(client(port, None)) for _ in range(2)]
    try:
        for m in members:
            await m.start(SHARED)
        async with client(port, None) as pub:
            await _round(pub)
            total = len(TOPICS) * ROUND
            await wait_for(lambda: sum(m.got.total() for m in members) >= total, 30, "the group")
            await asyncio.sleep(0.5)  # a copy too many would have come by now
            assert sum(m.got.total() for m in members) == total
            assert all(m.got.total() for m in members)
    finally:
        for m in members:
            await m.stop()
