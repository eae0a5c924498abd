"""The node agent process: one :class:`asyncio.TaskGroup` owning the bus, the reconcile loop,
the heartbeat loop and the publishers of actual state and events.

Start-up order: desired state from disk, runtimes, first reconcile pass (no broker needed),
then the bus connects in the background. After every (re)connect the agent publishes ``hello``
and ``state: online`` (both retained) and its ``actual`` state; the broker publishes the last
will (``state: offline``) if the session dies; a clean shutdown publishes ``offline`` itself.
Workloads keep running when the agent stops.

This module holds the :class:`Agent` itself (its loops, connects, shutdown, and the
publishers of actual state and events); it gets the opening and closing of its runtimes from
``fogmesh.agent.service_runtimes``, its heartbeat loop from ``fogmesh.agent.service_heartbeat``,
the news of devices that came or went from ``fogmesh.agent.service_devices`` and the taking of
desired states from ``fogmesh.agent.service_desired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import uuid
from collections import deque
from typing import TYPE_CHECKING

import structlog

from fogmesh.agent.artefact_fetch import SiteFetcher
from fogmesh.agent.blob_gc import blob_collector
from fogmesh.agent.commands import CommandHandler
from fogmesh.agent.config import AgentConfig
from fogmesh.agent.facts import default_node_id, device_catalog, gather_facts, sample_usage
from fogmesh.agent.heartbeat import BeatPolicy
from fogmesh.agent.reconcile import Reconciler
from fogmesh.agent.runtime.base import Runtime
from fogmesh.agent.service_desired import DesiredIntake
from fogmesh.agent.service_heartbeat import HeartbeatLoop
from fogmesh.agent.service_runtimes import RuntimeSetup
from fogmesh.agent.store import DesiredStore
from fogmesh.agent.trouble import TroubleWatch
from fogmesh.bus import Bus, BusConfig, RawMessage, Will
from fogmesh.protocol import (
    NodeChannel,
    NodeFacts,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    RuntimeKind,
    Usage,
    topics,
)

if TYPE_CHECKING:
    from fogmesh.protocol.events import Event

__all__ = ["Agent"]

log = structlog.get_logger("fogmesh.agent")


class Agent(RuntimeSetup, HeartbeatLoop, DesiredIntake):
    """One node agent."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.node = config.node_id or default_node_id()
        self.boot_id = uuid.uuid4().hex
        self.state_dir = config.state_dir
        self.store = DesiredStore(self.state_dir, self.node)
        self.runtimes: dict[RuntimeKind, Runtime] = {}
        self.missing: dict[RuntimeKind, str] = {}
        self.reconciler: Reconciler | None = None
        self.bus: Bus | None = None
        self.client_id = config.broker.client_id or f"{self.node}-agent"[:128]
        self._events: deque[tuple[str, Event]] = deque(maxlen=1000)
        self._events_ready = asyncio.Event()
        self._seq = 0
        self.beats = BeatPolicy(
            every_s=config.heartbeat_interval_s,
            max_s=config.heartbeat_max_interval_s,
            deadband_percent=config.heartbeat_deadband_percent,
            on_change=config.heartbeat_on_change,
            usage_min_s=config.heartbeat_usage_wait_s,
        )
        """When heartbeats go out (:mod:`fogmesh.agent.heartbeat`)."""
        self._facts: NodeFacts | None = None
        self.devices = device_catalog(config)
        self.fetcher = SiteFetcher(self.state_dir, self.node, config.site, lambda: self.bus)
        """Artefacts and images by ref, from the site's cache (``docs/artefacts.md``)."""
        self.ready = asyncio.Event()
        """Set once the first reconcile pass is done and the loops run."""

    # -- setup --------------------------------------------------------------------------------

    def facts(self) -> NodeFacts:
        """The node's facts (cached after the first call; refreshed at each reconnect)."""
        if self._facts is None:
            self._facts = gather_facts(self.config, [k.value for k in self.runtimes])
        return self._facts

    def usage(self) -> Usage:
        """Node usage now."""
        return sample_usage(self.state_dir)

    def _bus_config(self) -> BusConfig:
        config = self.config.broker.bus_config(self.client_id)
        if (
            self.config.heartbeat_on_change
            and "keepalive" not in self.config.broker.model_fields_set
        ):
            # liveness on the LAN is the session: the site broker fires the will of a silent
            # agent after 1.5 keepalives, 3 sampling intervals (docs/agent.md, "Heartbeats")
            keepalive = max(1, math.ceil(2 * self.config.heartbeat_interval_s))
            config = dataclasses.replace(config, keepalive=keepalive)
        return config

    def _state_message(self, state: NodeLiveness) -> NodeStateMessage:
        return NodeStateMessage(
            node=self.node, state=state, boot_id=self.boot_id, source=self.client_id
        )

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        loaded = self.store.load()
        log.info(
            "agent starting",
            node=self.node,
            state_dir=str(self.state_dir),
            desired_generation=None if loaded is None else loaded.generation,
        )
        await self._open_runtimes()
        self.reconciler = Reconciler(
            self.node,
            self.store,
            self.runtimes,
            missing_runtimes=self.missing,
            stop_timeout=self.config.stop_timeout_s,
            retry_base=self.config.retry_base_s,
            retry_cap=self.config.retry_cap_s,
            emit=self._emit,
        )
        commands = CommandHandler(
            self.node,
            self.reconciler,
            facts=self.facts,
            usage=self.usage,
            allow_operator=self.config.allow_operator_commands,
            stop_timeout=self.config.stop_timeout_s,
        )
        will = Will(
            topics.node(self.node, NodeChannel.STATE), self._state_message(NodeLiveness.OFFLINE)
        )
        bus = Bus(self._bus_config(), will=will)
        self.bus = bus
        bus.subscribe(topics.node(self.node, NodeChannel.DESIRED), RawMessage, self._on_desired)
        commands.register(bus)
        bus.on_connect(self._on_connect)
        try:
            async with bus:
                try:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self.reconciler.run(self.config.reconcile_interval_s))
                        group.create_task(self._actual_loop(bus))
                        group.create_task(self._event_loop(bus))
                        group.create_task(self._heartbeat_loop(bus))
                        group.create_task(self._trouble_watch().run(bus))
                        group.create_task(blob_collector(self).run())
                        if self.config.device_streams:
                            group.create_task(self._device_reader(bus).run())
                        self.ready.set()
                finally:
                    await commands.follows.close()  # log follows end with the agent
                    await self._say_offline(bus)
        finally:
            await self._close_runtimes()

    def _trouble_watch(self) -> TroubleWatch:
        assert self.reconciler is not None
        reconciler = self.reconciler
        return TroubleWatch(
            self.node, self.state_dir, lambda: reconciler.down,
            disk_percent=self.config.trouble_disk_percent,
            repeat_s=self.config.trouble_repeat_s,
            interval_s=self.config.heartbeat_interval_s,
        )  # fmt: skip

    async def _say_offline(self, bus: Bus) -> None:
        """A clean shutdown says offline itself (the will is only for unclean deaths)."""
        if not bus.connected:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await bus.publish(
                    topics.node(self.node, NodeChannel.STATE),
                    self._state_message(NodeLiveness.OFFLINE),
                    retain=True,
                )

    async def _on_connect(self, bus: Bus) -> None:
        self._facts = None
        facts = await asyncio.to_thread(self.facts)
        hello = NodeHello(node=self.node, facts=facts, boot_id=self.boot_id, source=self.client_id)
        await bus.publish(topics.node(self.node, NodeChannel.HELLO), hello, retain=True)
        await bus.publish(
            topics.node(self.node, NodeChannel.STATE),
            self._state_message(NodeLiveness.ONLINE),
            retain=True,
        )
        if self.reconciler is not None:
            await self._publish_actual(bus)
        log.info("connected to the bus; hello sent", node=self.node, connects=bus.connects)

    async def _publish_actual(self, bus: Bus) -> None:
        assert self.reconciler is not None
        self.reconciler.changed.clear()
        actual = self.reconciler.actual(source=self.client_id)
        await bus.publish(topics.node(self.node, NodeChannel.ACTUAL), actual, retain=True)

    async def _actual_loop(self, bus: Bus) -> None:
        assert self.reconciler is not None
        while True:
            await self.reconciler.changed.wait()
            try:
                await self._publish_actual(bus)
            except Exception:
                log.exception("publishing actual state failed")
                await asyncio.sleep(1)

    def _emit(self, tenant: str | None, event: Event) -> None:
        kind = event.kind.value
        topic = topics.tenant_event(tenant, kind) if tenant else topics.fleet_event(kind)
        self._events.append((topic, event.model_copy(update={"source": self.client_id})))
        self._events_ready.set()

    async def _event_loop(self, bus: Bus) -> None:
        while True:
            await self._events_ready.wait()
            self._events_ready.clear()
            while self._events:
                topic, event = self._events.popleft()
                try:
                    await bus.publish(topic, event)
                except Exception:
                    log.exception("publishing an event failed", topic=topic)
