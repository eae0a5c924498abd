"""The registry service: one bus connection, one database writer, one liveness judge.

:meth:`Registry.run` opens the database (creating or upgrading the schema), loads every node's
liveness, connects to the bus and runs its loops (the batching writer and the liveness judge)
in one :class:`asyncio.TaskGroup` until cancelled; cancelling it cancels the loops, waits for
them (the writer commits what it still holds) and disconnects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time

import structlog
from sqlalchemy import Engine

from fogmesh.bus import Bus, BusConfig
from fogmesh.protocol import Event, topics
from fogmesh.registry.api import QueryApi
from fogmesh.registry.batcher import WriteQueue
from fogmesh.registry.db import reads
from fogmesh.registry.db.engine import make_engine
from fogmesh.registry.db.migrate import migrate
from fogmesh.registry.db.writes import BatchWriter
from fogmesh.registry.ingest import Ingest
from fogmesh.registry.liveness import LivenessTracker
from fogmesh.registry.partition import Partition
from fogmesh.registry.replicas import ReplicaView
from fogmesh.registry.settings import RegistrySettings
from fogmesh.registry.sites import SiteWatch

__all__ = ["Registry"]

log = structlog.get_logger("fogmesh.registry")

_IN_FLIGHT = 8
_REFREEZE_GROWTH = 1.25
"""The fleet grows by this factor before the objects made so far are frozen again."""


class Registry:
    """The registry: ingest from the bus, judge liveness, answer queries."""

    def __init__(self, settings: RegistrySettings, *, engine: Engine | None = None) -> None:
        self.settings = settings
        self._outgoing: asyncio.Queue[Event] = asyncio.Queue()
        self.engine = engine or make_engine(settings.db_url)
        self.tracker = LivenessTracker(
            missed=settings.missed, default_interval=settings.default_interval
        )
        self.writer = WriteQueue(
            BatchWriter(self.engine, history_size=settings.history_size),
            interval=settings.batch_interval,
            max_items=settings.batch_max,
        )
        self.ingest = Ingest(
            self.tracker, self.writer, self._outgoing.put_nowait, source=settings.bus.client_id
        )
        self.sites = SiteWatch(self.tracker, self.ingest)
        self.ingest.hello_hooks.append(self.sites.on_hello)
        self.api = QueryApi(self.engine)
        self.replicas: ReplicaView | None = None
        self.partition: Partition | None = None
        if settings.share is not None:
            self.replicas = ReplicaView(self.engine, period=settings.replica_period_s)
            self.tracker.elsewhere = self._elsewhere
            if settings.share_by == "registry":
                self.partition = Partition(
                    self.engine,
                    group=settings.share,
                    me=settings.bus.client_id,
                    period=settings.replica_period_s,
                    left=self._not_mine,
                )
        self.ready = asyncio.Event()
        self.bus: Bus | None = None

    async def run(self) -> None:
        """Run until cancelled."""
        added = await asyncio.to_thread(migrate, self.engine)
        if added:
            log.info("schema upgraded", added=added)
        records = await asyncio.to_thread(reads.load_liveness, self.engine)
        now = time.monotonic()
        for r in records:
            self.tracker.load(
                r.node, r.state, r.interval_s, boot_id=r.boot_id, reason=r.reason, now=now
            )
        log.info("registry starting", nodes=len(records), db=self.engine.url.render_as_string())
        if self.partition is not None:
            await self.partition.prepare()
        gc.freeze()  # see _keep_gc_short
        async with Bus(self._bus_config()) as bus:
            self.bus = bus
            owned = bus if self.partition is None else self.partition.subscriber(bus)
            share = self.settings.share if self.partition is None else None
            self.ingest.attach(owned, share=share)
            self.sites.attach(bus)
            self.api.attach(owned, share=share)
            if self.partition is not None:
                bus.on_connect(self.partition.on_connect)
            try:
                async with asyncio.TaskGroup() as group:
                    if self.replicas is not None:
                        await self.replicas.refresh()  # before the first judging pass
                        group.create_task(self.replicas.run(), name="registry.replicas")
                    if self.partition is not None:
                        group.create_task(self.partition.run(), name="registry.partition")
                    group.create_task(self.writer.run(), name="registry.writer")
                    group.create_task(self._judge(), name="registry.liveness")
                    group.create_task(self._publisher(bus), name="registry.publisher")
                    group.create_task(self._announce_ready(bus), name="registry.ready")
            finally:
                self.bus = None
                self.ready.clear()

    def _elsewhere(self, node: str) -> tuple[float, str] | None:
        """What the replicas stored of ``node``, for the liveness judge (``elsewhere``).

        A replica learns each node's heartbeat interval from the heartbeats it hears; one that
        hears none of a node's (the broker or the partition gives them to another) takes the
        interval stored. And with ``--share-by registry`` a node whose owner is a live member
        is that member's to judge: it counts as seen now, unless stored offline (an agent that
        sends a heartbeat only on news is silent for minutes, and judged here by the default
        interval it was lost after a few seconds, then stayed offline everywhere)."""
        assert self.replicas is not None
        stored = self.replicas.lookup(node)
        live = self.tracker.nodes.get(node)
        if live is not None and live.interval is None:
            live.interval = self.replicas.interval(node)
        partition = self.partition
        if stored is None or partition is None or stored[1] == "offline":
            return stored
        if partition.owns(node.encode()):
            return stored
        return (time.monotonic(), stored[1])

    def _not_mine(self, node: str) -> None:
        """``node`` is another replica's (:class:`Partition`): judged as a node not heard."""
        live = self.tracker.nodes.get(node)
        if live is not None:
            live.heard = False

    def _bus_config(self) -> BusConfig:
        """The bus settings; a replica's session is clean.

        A broker keeps a persistent session's shared subscriptions while its client is away,
        and Mosquitto 2 goes on handing that member its share of the messages, queued for a
        replica that may never return: after one of two replicas was SIGKILLed, a third of
        the fleet's heartbeats still went to the dead one. A clean session ends with its
        connection, so the dead member's share moves to the others at once; what a replica
        misses while away the others take (the nodes' state is in the shared database)."""
        if self.settings.share is None:
            return self.settings.bus
        return dataclasses.replace(self.settings.bus, clean_session=True)

    async def _announce_ready(self, bus: Bus) -> None:
        await bus.wait_connected()
        self.ready.set()
        log.info("registry ready")

    async def _judge(self) -> None:
        frozen_at = len(self.tracker.nodes)
        while True:
            await asyncio.sleep(self.settings.tick_s)
            now = self.ingest.timeline.now(time.monotonic())  # see fogmesh.registry.timeline
            await self.ingest.apply(self.tracker.tick(now))
            frozen_at = self._keep_gc_short(frozen_at)

    def _keep_gc_short(self, frozen_at: int) -> int:
        """Keep the long-lived objects out of the cycle collector's full passes.

        A full pass walks every object: the libraries' (some 250,000 once sqlalchemy and
        pydantic are imported) and one set per node. On a loaded 2-core machine such a pass
        took 0.8 to 1.7 s, with the event loop stopped and every heartbeat waiting: the
        registry's worst lags. So what exists at start is frozen (``gc.freeze``), and again
        whenever the fleet has grown by a quarter (each node's state lives as long as the
        registry); a handful of freezes in a registry's life, each leaving at most the cyclic
        garbage of that moment uncollected. Returns the fleet size of the last freeze.
        """
        nodes = len(self.tracker.nodes)
        if nodes > max(frozen_at, 1000) * _REFREEZE_GROWTH:
            gc.freeze()
            log.info("long-lived objects frozen", nodes=nodes, frozen=gc.get_freeze_count())
            return nodes
        return frozen_at

    async def _publisher(self, bus: Bus) -> None:
        """Publish recorded fleet events in order, a few in flight, off the writer's path.

        Eight in flight keeps under aiomqtt's pending-call threshold (10), past which it logs a
        warning for every publish: in a join storm of 10,000 nodes that logging cost more than
        the publishing, and eight already publish thousands of events a second."""
        while True:
            events = [await self._outgoing.get()]
            while len(events) < _IN_FLIGHT and not self._outgoing.empty():
                events.append(self._outgoing.get_nowait())
            results = await asyncio.gather(
                *(bus.publish(topics.fleet_event(e.kind.value), e, qos=1) for e in events),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, Exception):
                    log.error("publishing a fleet event failed", error=repr(result))
