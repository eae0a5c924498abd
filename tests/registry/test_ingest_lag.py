"""A registry whose ingest is behind judges silence on what it has read, not by the clock.

A real broker and registry; the heartbeat handler is held at a gate, so heartbeats that
arrived in time wait in the registry's own queue (as behind a join storm on a loaded machine).
The judge's ticks are recorded with the transitions they made: nothing asserts on timings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from fogmesh.bus import Bus, MessageContext
from fogmesh.protocol import EventKind, Heartbeat
from fogmesh.registry import Registry
from fogmesh.registry.ingest import Ingest
from fogmesh.registry.liveness import Transition
from fogmesh.registry.timeline import ReadTimeline
from tests.registry.support import USAGE, SimNode, run_registry, until
from tests.support.brokers import BrokerProcess
from tests.support.buses import unique


class Gate:
    """Holds the registry's heartbeat handler while closed (heartbeats queue behind it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.held = 0
        original = Ingest.on_heartbeat

        async def gated(ingest: Ingest, msg: Heartbeat, ctx: MessageContext) -> None:
            if not self.open.is_set():
                self.held += 1
                await asyncio.wait_for(self.open.wait(), timeout=60)
            await original(ingest, msg, ctx)

        monkeypatch.setattr(Ingest, "on_heartbeat", gated)


class Ticks:
    """Every judging pass of ``registry``: the clock it ran at and what it judged."""

    def __init__(self, registry: Registry) -> None:
        self.seen: list[tuple[float, list[Transition]]] = []
        tick: Callable[[float], list[Transition]] = registry.tracker.tick

        def recorded(now: float) -> list[Transition]:
            out = tick(now)
            self.seen.append((time.monotonic(), out))
            return out

        registry.tracker.tick = recorded  # type: ignore[method-assign]

    def kinds(self, node: str) -> list[EventKind | None]:
        return [t.kind for _, out in self.seen for t in out if t.node == node]

    def ran_after(self, clock: float) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return any(at >= clock for at, _ in self.seen)

        return check


async def _heard(registry: Registry, node: str) -> bool:
    live = registry.tracker.nodes.get(node)
    return live is not None and live.interval is not None and live.newest_seq >= 1


async def test_heartbeats_waiting_in_the_registry_do_not_make_their_node_stale(
    broker: BrokerProcess, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    node = unique("n")
    # heartbeats every 1 s: stale after 1.5 s; the hold may reach 3 s (the default interval)
    async with (
        run_registry(broker, sqlite_url, missed=3, default_interval=3.0) as registry,
        SimNode(broker, node, interval=1.0) as sim,
    ):
        ticks = Ticks(registry)
        await until(lambda: _heard(registry, node), what="heartbeats taken")
        gate.open.clear()
        last_seen = registry.tracker.nodes[node].last_seen
        # the node goes on beating; the registry judges 2.5 s after the last one it took
        await until(ticks.ran_after(last_seen + 2.5), what="judged while its heartbeats wait")
        assert gate.held >= 1  # a heartbeat that arrived in time is waiting
        gate.open.set()
        seq = sim.seq - 1
        await until(
            lambda: _async(registry.tracker.nodes[node].newest_seq >= seq), what="caught up"
        )
        assert EventKind.NODE_STALE not in ticks.kinds(node)
        assert registry.tracker.state(node) == "online"


async def test_a_registry_hopelessly_behind_still_judges(
    broker: BrokerProcess, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    node = unique("n")
    # the hold is bounded by the default interval (1 s): judged stale at most that late
    async with (
        run_registry(broker, sqlite_url, missed=3, default_interval=1.0) as registry,
        SimNode(broker, node, interval=1.0),
    ):
        ticks = Ticks(registry)
        await until(lambda: _heard(registry, node), what="heartbeats taken")
        gate.open.clear()
        await until(
            lambda: _async(EventKind.NODE_STALE in ticks.kinds(node)), what="stale, in the end"
        )
        gate.open.set()
        await until(lambda: _async(registry.tracker.state(node) == "online"), what="back")


class _Queue:
    def __init__(self, since: float | None) -> None:
        self.since = since

    def waiting_since(self) -> float | None:
        return self.since


def _ctx(queue: _Queue | None, received: float) -> MessageContext:
    hb = Heartbeat(node="n", seq=0, interval_s=1.0, usage=USAGE)
    return MessageContext(cast(Bus, None), "t", None, False, hb, received, queue)


def test_the_timeline_is_the_oldest_arrival_not_handled_within_its_bound() -> None:
    timeline = ReadTimeline(max_behind=10.0)
    assert timeline.now(90.0) == 90.0  # no queue known: the clock
    beats, hellos = _Queue(None), _Queue(None)
    assert timeline.received(_ctx(beats, 95.0), 100.0) == 95.0
    assert timeline.received(_ctx(hellos, 0.0), 101.0) == 101.0  # no stamp: the clock
    beats.since, hellos.since = 97.0, 99.0
    assert timeline.behind(103.0) == 6.0
    assert timeline.now(103.0) == 97.0  # the oldest heartbeat not yet handled
    beats.since = None
    assert timeline.now(104.0) == 99.0
    assert timeline.now(130.0) == 120.0  # hopelessly behind: at most max_behind
    hellos.since = None
    assert timeline.now(131.0) == 131.0


def test_the_timeline_never_goes_back() -> None:
    timeline = ReadTimeline(max_behind=10.0)
    queue = _Queue(None)
    timeline.received(_ctx(queue, 50.0), 50.0)
    assert timeline.now(60.0) == 60.0
    queue.since = 55.0  # cannot happen after a pass at 60 (queues are first in, first out)
    assert timeline.now(61.0) == 60.0


async def _async(value: Any) -> Any:
    return value
