"""The migrator service on the bus. It follows every node (hello, state, heartbeat, actual and the
scheduler's retained desired states), answers ``fm/v1/api/{tenant}/migrations/{action}``
(migrate, drain) and judges the triggers every tick (overload; a node's own ask on
``nodes/{node}/trouble``; node lost, which only marks the node failed: see docs/migrator.md)
while it holds the ``migrator`` lease. A standby follows the fleet too but answers and moves
nothing. It never writes desired state: the scheduler leader does, on its
``fm/v1/ops/scheduler/move``. In site mode (``site`` set; one per site, on the site broker,
lease ``migrator-{site}``) it does only one thing: while its site's links are down it writes
its site's nodes' desired state itself, moving a lost node's workloads to a peer of the site
(:mod:`fogmesh.migrator.site`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from fogmesh.bus import Action, Bus, MessageContext, Refusal, RequestRouter
from fogmesh.migrator.config import MigratorConfig
from fogmesh.migrator.device_loss import DeviceLoss
from fogmesh.migrator.fleet import FleetView
from fogmesh.migrator.guard import Guard
from fogmesh.migrator.mover import Mover, Outcome
from fogmesh.migrator.replicator import Replicator
from fogmesh.migrator.site import SiteWriter
from fogmesh.protocol import topics
from fogmesh.protocol.errors import ErrorCode
from fogmesh.protocol.events import Event, EventKind
from fogmesh.protocol.mesh import LinkStatus
from fogmesh.protocol.migration import (
    MIGRATIONS_RESOURCE,
    DrainNode,
    MigrateWorkload,
    MigrationAction,
    MigrationReply,
    MigrationTrigger,
    NodeTrouble,
    StageOutcome,
)
from fogmesh.protocol.node import Heartbeat, NodeHello, NodeStateMessage
from fogmesh.protocol.topics import NodeChannel
from fogmesh.protocol.workload import ActualState, DesiredState
from fogmesh.service import LeaderDuty, LeaderService

__all__ = ["DUTY", "MigratorService"]

DUTY = "migrator"
log = structlog.get_logger("fogmesh.migrator")


class MigratorService(LeaderService):
    """One migrator instance: leader or standby, decided by the ``migrator`` lease."""

    def __init__(self, config: MigratorConfig) -> None:
        self.config = config
        self.fleet = FleetView(home=config.site)
        self.guard = Guard(
            cooldown_s=config.cooldown_s, budget=config.node_budget,
            window_s=config.node_budget_window_s, avoid_s=config.failed_node_avoid_s,
        )  # fmt: skip
        self.bus: Bus | None = None
        duty = DUTY if config.site is None else f"{DUTY}-{config.site}"
        self.duty = LeaderDuty(duty, config, self._on_gain)
        self.site: SiteWriter | None = None
        """Site mode: the site's own writer while it is cut off (set once the bus is up)."""
        self.mover: Mover | None = None
        self.replicator: Replicator | None = None
        """Copies stateful workloads' state to peers (set once the bus is up)."""
        self.ready = asyncio.Event()
        """Set once this instance leads."""
        self.asking: dict[str, NodeTrouble] = {}
        """Nodes that asked for their workloads to move, with their latest ask."""
        self.device_loss = DeviceLoss(self.fleet, self.guard)
        """Holders of lost devices whose manifest asks to move (trigger device-lost)."""
        self.api = RequestRouter(
            topics.api_filter(MIGRATIONS_RESOURCE),
            {
                MigrationAction.MIGRATE.value: Action(MigrateWorkload, self._migrate),
                MigrationAction.DRAIN.value: Action(DrainNode, self._drain),
            },
            what="migrations action",
            guard=lambda: self.leader,  # a standby stays silent; the leader answers
        )

    async def run(self) -> None:
        """Run until cancelled; leaving cancels every loop and waits for it (TaskGroup)."""
        async with Bus(self.config.bus_config()) as bus:
            self.bus = bus
            if self.config.site is not None:
                self.site = SiteWriter(
                    bus, self.config.site, self.fleet, self.guard, self.config.client_id
                )
            else:
                self.mover = Mover(bus, self.config, self.fleet, self.guard)
                self.replicator = Replicator(bus, self.config, self.fleet, self.mover)
            await self.duty.run(bus, self._subscribe, tick=self._tick_loop)

    def _subscribe(self, bus: Bus) -> None:
        bus.subscribe(topics.node_filter(NodeChannel.HELLO), NodeHello, self._on_hello)
        bus.subscribe(topics.node_filter(NodeChannel.STATE), NodeStateMessage, self._on_state)
        bus.subscribe(topics.node_filter(NodeChannel.HEARTBEAT), Heartbeat, self._on_beat)
        bus.subscribe(topics.node_filter(NodeChannel.ACTUAL), ActualState, self._on_actual)
        bus.subscribe(topics.node_filter(NodeChannel.DESIRED), DesiredState, self._on_desired)
        bus.subscribe(topics.mesh_link_filter(), LinkStatus, self._on_link)
        if self.config.site is not None:
            return  # the cloud's migrator answers the API and the asks (they cross the links)
        bus.subscribe(topics.node_filter(NodeChannel.TROUBLE), NodeTrouble, self._on_trouble)
        if self.replicator is not None:  # deleted or re-deployed apps: their replicas go
            for kind in (EventKind.APP_DELETED, EventKind.APP_DEPLOYED):
                bus.subscribe(topics.tenant_event_filter(None, kind), Event,
                              self.replicator.on_app_event)  # fmt: skip
        self.api.attach(bus)
        self.device_loss.attach(bus)

    async def _on_gain(self, term: int) -> None:
        log.info("migrator leads", term=term)
        self.ready.set()

    # --- the fleet -----------------------------------------------------------------------------

    async def _on_hello(self, msg: NodeHello, ctx: MessageContext) -> None:
        self.fleet.on_hello(msg)

    async def _on_state(self, msg: NodeStateMessage, ctx: MessageContext) -> None:
        was_lost = self.fleet.node(msg.node).lost_at is not None
        self.fleet.on_state(msg.node, msg.state)
        if not was_lost and self.fleet.node(msg.node).lost_at is not None:
            self._lost(msg.node, "last-will")

    async def _on_beat(self, msg: Heartbeat, ctx: MessageContext) -> None:
        self.fleet.on_heartbeat(msg)

    async def _on_link(self, msg: LinkStatus, ctx: MessageContext) -> None:
        self.fleet.on_link(msg)

    async def _on_actual(self, msg: ActualState, ctx: MessageContext) -> None:
        self.fleet.on_actual(msg)

    async def _on_desired(self, msg: DesiredState, ctx: MessageContext) -> None:
        self.fleet.on_desired(msg)

    async def _on_trouble(self, msg: NodeTrouble, ctx: MessageContext) -> None:
        if ctx.ref is None or ctx.ref.node != msg.node:
            log.warning("a trouble report names another node than its topic", node=msg.node,
                        topic=ctx.topic)  # fmt: skip
            return
        if msg.node not in self.asking:
            log.info("node asks to move its workloads", node=msg.node, kind=msg.kind.value,
                     detail=msg.detail)  # fmt: skip
        self.guard.troubled(msg.node, msg.kind.value)  # nothing moves onto it meanwhile
        self.asking[msg.node] = msg  # the tick moves them (a bus handler must not wait long)

    def _lost(self, node: str, how: str) -> None:
        # The scheduler re-places a lost node's workloads (a dead node cannot hand its state
        # over); the migrator keeps planned moves off it for failed_node_avoid_s, and a
        # stateful workload's replacement restores the replica its holder keeps staged.
        self.guard.failed(node)
        if self.replicator is not None:
            self.replicator.on_lost(node)
        log.warning("node lost", node=node, how=how)

    # --- the triggers --------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            for view in self.fleet.judge():
                self._lost(view.id, view.lost_how)
            if not self.leader:
                self.ready.clear()
                continue
            if self.site is not None:
                await self.site.tick()
                continue
            await self._shed_overload()
            await self._answer_asks()
            await self.device_loss.tick(self._move)
            assert self.replicator is not None
            await self.replicator.tick()

    async def _shed_overload(self) -> None:
        """One workload off each node hot for the whole window; its window then starts over,
        so a node sheds one workload at a time."""
        c = self.config
        hot = self.fleet.overloaded(
            high=c.overload_cpu_percent, memory_high=c.overload_memory_percent,
            clear=c.overload_clear_percent, window_s=c.overload_window_s, now=time.monotonic(),
        )  # fmt: skip
        for node in hot:
            view = self.fleet.node(node)
            view.hot_since = time.monotonic()
            specs = sorted(view.desired, key=lambda s: -(s.cpu_limit or 0.0))
            for spec in specs:
                outcome = await self._move(spec.tenant, spec.name, MigrationTrigger.OVERLOAD)
                if outcome.outcome is StageOutcome.MOVED:
                    break

    async def _answer_asks(self) -> None:
        """Move every workload of each node that asked (one ask, one pass; the agent asks
        again while the trouble lasts, and the cool-down and the node's budget hold back the
        rest, so an agent that keeps asking cannot empty a fleet onto one peer at once)."""
        while self.asking:
            node, ask = self.asking.popitem()
            if node not in self.fleet.live():
                continue
            for spec in sorted(self.fleet.node(node).desired, key=lambda s: (s.tenant, s.name)):
                await self._move(spec.tenant, spec.name, MigrationTrigger.NODE_ASKS)
            log.info("answered a node's ask", node=node, kind=ask.kind.value)

    async def _move(
        self, tenant: str, workload: str, trigger: MigrationTrigger, to: str | None = None
    ) -> Outcome:
        assert self.mover is not None
        return await self.mover.migrate(tenant, workload, trigger, to=to)

    # --- the API -------------------------------------------------------------------------------

    @staticmethod
    def _tenant(request: Any, ctx: MessageContext) -> str:
        tenant = ctx.ref.tenant if ctx.ref is not None else None
        if tenant is None:
            raise Refusal(ErrorCode.INVALID_REQUEST, f"no tenant in topic {ctx.topic}")
        if request.tenant is not None and request.tenant != tenant:
            raise Refusal(ErrorCode.UNAUTHORISED, "a tenant may move only its own workloads")
        return tenant

    async def _migrate(self, request: MigrateWorkload, ctx: MessageContext) -> None:
        tenant = self._tenant(request, ctx)
        if self.fleet.find(tenant, request.workload) is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"tenant {tenant} has no workload placed as "
                          f"{request.workload}")  # fmt: skip
        outcome = await self._move(tenant, request.workload, MigrationTrigger.BY_HAND, request.to)
        await ctx.reply(_reply(request, {request.workload: outcome}, self.config.client_id))

    async def _drain(self, request: DrainNode, ctx: MessageContext) -> None:
        tenant = self._tenant(request, ctx)
        specs = [s for s in self.fleet.node(request.node).desired if s.tenant == tenant]
        outcomes = {}
        for spec in sorted(specs, key=lambda s: s.name):
            outcomes[spec.name] = await self._move(tenant, spec.name, MigrationTrigger.DRAIN)
        await ctx.reply(_reply(request, outcomes, self.config.client_id))


def _reply(request: Any, outcomes: dict[str, Outcome], source: str) -> MigrationReply:
    return MigrationReply.to(
        request,
        source=source,
        outcomes={w: o.outcome for w, o in outcomes.items()},
        peers={w: o.peer for w, o in outcomes.items() if o.peer is not None},
        reasons={w: o.reason for w, o in outcomes.items() if o.reason},
    )
