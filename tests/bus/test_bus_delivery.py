"""The bus client against real brokers: delivery, reconnect, persistent sessions, last will."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from fogmesh.bus import Bus, RawMessage
from fogmesh.protocol import (
    Event,
    EventKind,
    NodeLiveness,
    NodeStateMessage,
    NotConnectedError,
    topics,
)
from tests.support.brokers import REPO, BrokerProcess
from tests.support.buses import bus_config, eventually, unique


async def test_typed_publish_reaches_typed_handler(broker: BrokerProcess) -> None:
    got: list[Event] = []
    topic = topics.fleet_event(unique("kind"))

    async def on_event(event: Event, ctx: object) -> None:
        got.append(event)

    async with Bus(bus_config(broker)) as sub, Bus(bus_config(broker)) as pub:
        sub.subscribe(topic, Event, on_event)
        await sub.wait_connected(timeout=15)
        await pub.wait_connected(timeout=15)
        await pub.publish(topic, Event(kind=EventKind.NODE_JOINED, node="n1"))
        await eventually(lambda: len(got) == 1)
    assert got[0].node == "n1"
    assert got[0].kind is EventKind.NODE_JOINED


async def test_broker_restart_resubscribes_flushes_outbox_and_never_doubles(
    broker: BrokerProcess,
) -> None:
    """Stop the broker; publish while it is down; start it: all arrive, once each, in order."""
    got: list[int] = []
    topic = topics.fleet_event(unique("kind"))

    async def on_event(event: Event, ctx: object) -> None:
        got.append(int(event.data["n"]))

    async with Bus(bus_config(broker)) as bus:
        bus.subscribe(topic, Event, on_event)
        await bus.wait_connected(timeout=15)
        await bus.publish(topic, Event(kind=EventKind.NODE_BACK, data={"n": 0}))
        await eventually(lambda: got == [0])

        broker.stop()
        await eventually(lambda: not bus.connected, what="bus noticed the broker is gone")
        for n in range(1, 51):
            await bus.publish(topic, Event(kind=EventKind.NODE_BACK, data={"n": n}))
        assert bus.queued == 50
        broker.start()

        await eventually(lambda: len(got) >= 51, timeout=30)
        await bus.publish(topic, Event(kind=EventKind.NODE_BACK, data={"n": 51}))
        await eventually(lambda: len(got) >= 52)
        await asyncio.sleep(0.3)  # room for a doubled handler to show itself
    assert got == list(range(52)), "each message once, in order"
    assert bus.connects >= 2


async def test_persistent_session_receives_what_was_published_while_away(
    broker: BrokerProcess,
) -> None:
    got: list[int] = []
    topic = topics.fleet_event(unique("kind"))
    client_id = unique("persistent")

    async def on_event(event: Event, ctx: object) -> None:
        got.append(int(event.data["n"]))

    async with Bus(bus_config(broker, client_id)) as sub:
        sub.subscribe(topic, Event, on_event)
        await sub.wait_connected(timeout=15)

    async with Bus(bus_config(broker)) as pub:
        await pub.wait_connected(timeout=15)
        for n in range(20):
            await pub.publish(topic, Event(kind=EventKind.NODE_BACK, data={"n": n}), qos=1)

    async with Bus(bus_config(broker, client_id)) as sub:
        sub.subscribe(topic, Event, on_event)
        await eventually(lambda: len(got) >= 20)
    assert sorted(set(got)) == list(range(20))


async def test_sigkilled_client_leaves_its_last_will(broker: BrokerProcess) -> None:
    node = unique("node")
    seen: list[NodeLiveness] = []

    async def on_state(msg: NodeStateMessage, ctx: object) -> None:
        seen.append(msg.state)

    async with Bus(bus_config(broker)) as watcher:
        watcher.subscribe(topics.node(node, "state"), NodeStateMessage, on_state)
        await watcher.wait_connected(timeout=15)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.will_client", str(broker.port), node, node],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line.strip() == b"ready"
            await eventually(lambda: NodeLiveness.ONLINE in seen)
            proc.kill()
            proc.wait()
            await eventually(lambda: seen[-1] is NodeLiveness.OFFLINE, timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_raw_subscription_gets_bytes_as_they_came(broker: BrokerProcess) -> None:
    got: list[bytes] = []
    topic = topics.data("acme", unique("app"), "in")

    async def on_raw(message: RawMessage, ctx: object) -> None:
        got.append(message.payload)

    async with Bus(bus_config(broker)) as bus:
        bus.subscribe(topic, RawMessage, on_raw)
        await bus.wait_connected(timeout=15)
        for payload in (b"not json {", b"\x00\xff", b'{"a": 1}'):
            await bus.publish_raw(topic, payload)
        await eventually(lambda: len(got) == 3)
    assert got == [b"not json {", b"\x00\xff", b'{"a": 1}']


async def test_unqueued_publish_refuses_while_disconnected(broker: BrokerProcess) -> None:
    """A lease holder's writes must never wait in the outbox to land after a new leader's."""
    broker.stop()
    async with Bus(bus_config(broker)) as bus:
        with pytest.raises(NotConnectedError):
            await bus.publish(
                topics.lease("scheduler"), Event(kind=EventKind.NODE_BACK), retain=True, queue=False
            )
        assert bus.queued == 0
        await bus.publish(topics.fleet_event("x"), Event(kind=EventKind.NODE_BACK))
        assert bus.queued == 1
