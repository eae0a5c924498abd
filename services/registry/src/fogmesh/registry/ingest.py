"""Turn what the nodes and services publish into write operations and liveness transitions.

Each handler is cheap: it validates, updates the in-memory liveness tracker and queues writes;
the database is written by the batching writer. Messages whose topic names another node than
their payload are dropped with a warning. A sign of life counts from when the bus received it,
and the liveness judge judges on the registry's own timeline (:mod:`fogmesh.registry.timeline`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pydantic import ValidationError

from fogmesh.bus import Bus, MessageContext
from fogmesh.protocol import (
    ActualState,
    AppEventData,
    Event,
    EventKind,
    Heartbeat,
    NodeChannel,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    TopicKind,
    topics,
)
from fogmesh.registry.batcher import WriteQueue
from fogmesh.registry.events import event_row, transition_event
from fogmesh.registry.liveness import LivenessTracker, Transition
from fogmesh.registry.ops import (
    ActualOp,
    AppOp,
    Batch,
    EventOp,
    HeartbeatOp,
    HelloOp,
    JoinClaim,
    LivenessOp,
    LostClaim,
)
from fogmesh.registry.replicas import shared_filter
from fogmesh.registry.timeline import ReadTimeline

__all__ = ["Ingest", "event_row", "transition_event"]

log = structlog.get_logger("fogmesh.registry.ingest")

Publish = Callable[[Event], None]
"""Hands an event to the publisher; must not block."""

HelloHook = Callable[[NodeHello], Awaitable[None]]
"""Told every hello after ingest took it (the site watch learns each node's site)."""


class Ingest:
    """The bus handlers of the registry's ingest side."""

    def __init__(
        self, tracker: LivenessTracker, writer: WriteQueue, publish: Publish, *, source: str
    ) -> None:
        self.tracker = tracker
        self.timeline = ReadTimeline(max_behind=tracker.default_interval)
        self.writer = writer
        self.publish = publish
        self.source = source
        self.hello_hooks: list[HelloHook] = []
        writer.lost = self.claim_lost
        writer.dropped = self.claims_dropped

    def attach(self, bus: Bus, *, share: str | None = None) -> None:
        """Subscribe to every node channel the registry reads, and to all events (as members
        of the shared subscription ``share`` when replicas split the fleet)."""

        def sub(topic_filter: str, model: type[Any], handler: Any) -> None:
            bus.subscribe(shared_filter(topic_filter, share), model, handler)

        sub(topics.node_filter(NodeChannel.HELLO), NodeHello, self.on_hello)
        sub(topics.node_filter(NodeChannel.STATE), NodeStateMessage, self.on_state)
        sub(topics.node_filter(NodeChannel.HEARTBEAT), Heartbeat, self.on_heartbeat)
        sub(topics.node_filter(NodeChannel.ACTUAL), ActualState, self.on_actual)
        sub(topics.events_filter(), Event, self.on_event)

    async def apply(self, transitions: list[Transition]) -> None:
        """Record each transition and its event; publish the event once both are committed
        (a ``node-joined`` only if that commit created the node's row: see ``EventOp``)."""
        self._record(transitions)

    def _record(self, transitions: list[Transition]) -> None:
        for tr in transitions:
            now = time.time()
            event = transition_event(tr, self.source)
            # a join is told by the replica whose batch creates the node's row (claim_lost);
            # until that batch is committed the node's signs and will wait (tracker.settle)
            claim = tr.node if event is not None and event.kind is EventKind.NODE_JOINED else None
            will = tr.old is None and tr.new == "offline"  # a will of a node not known here
            join = None
            if claim is not None or will:
                via = "will" if will else tr.reason
                join = JoinClaim(tr.node, via, tr.boot_id or "", tr.retained, self.source)
                self.tracker.claimed(tr.node)
            self.writer.put(LivenessOp(tr.node, tr.new, now, tr.reason, tr.boot_id, join=join))
            if will:  # its loss, if the node was stored, is told by claim_lost
                settle = functools.partial(self._settle, tr.node, None)
                self.writer.after_commit(settle, claim=tr.node)
            if event is not None:
                log.info("node liveness", node=tr.node, old=tr.old, new=tr.new, reason=tr.reason)
                self.writer.put(EventOp(event_row(event, None, now), claim=claim))
                told = functools.partial(self.publish, event)
                if claim is not None:
                    told = functools.partial(self._joined, claim, event)
                self.writer.after_commit(told, claim=claim)

    def _joined(self, node: str, event: Event) -> None:
        """``node``'s join, claimed here, is this replica's: publish it, then take what the
        node said meanwhile. After the commit."""
        try:
            self.publish(event)
        finally:
            self._settle(node, None)

    def claim_lost(self, node: str, lost: LostClaim) -> None:
        """``node``'s join, claimed here, was another replica's to tell (its batch created the
        row): publish what the batch recorded instead (``node-back``), or, when it recorded
        nothing, take the node as stored (:mod:`fogmesh.registry.claims`); then what the node
        said meanwhile. After the commit."""
        if lost.told is None:
            self._settle(node, lost)
            return
        log.info(
            "node liveness", node=node, old=lost.state, kind=lost.told.kind.value, claim="lost"
        )
        try:
            self.publish(lost.told)
        finally:
            self._settle(node, None)

    def claims_dropped(self, batch: Batch) -> None:
        """A batch was given up: its claims settle as joined here (nothing was recorded)."""
        for node in batch.claims:
            self._settle(node, None)

    def _settle(self, node: str, lost: LostClaim | None) -> None:
        now = time.monotonic()
        if lost is None:
            self._record(self.tracker.settle(node, None, seen=now, now=now))
            return
        seen = now - max(0.0, time.time() - lost.last_seen)
        self._record(
            self.tracker.settle(
                node, lost.state, lost.reason, boot_id=lost.boot_id, seen=seen, now=now
            )
        )

    @staticmethod
    def _matches(ctx: MessageContext, node: str) -> bool:
        if ctx.ref is None or ctx.ref.node != node:
            log.warning("payload names another node than its topic", node=node)
            return False
        return True

    async def on_hello(self, msg: NodeHello, ctx: MessageContext) -> None:
        """Facts: stored; a live hello is a sign of life."""
        if not self._matches(ctx, msg.node):
            return
        now = self.timeline.received(ctx, time.monotonic())
        transitions = self.tracker.alive(
            msg.node, now, retained=ctx.retained, via="hello", boot_id=msg.boot_id
        )
        state = self.tracker.state(msg.node) or "online"
        facts = msg.facts.model_dump(mode="json")
        self.writer.put(HelloOp(msg.node, facts, msg.boot_id, state, time.time()))
        await self.apply(transitions)
        for hook in self.hello_hooks:
            await hook(msg)

    async def on_state(self, msg: NodeStateMessage, ctx: MessageContext) -> None:
        """``online`` is a sign of life; ``offline`` (the last will) is offline at once."""
        if not self._matches(ctx, msg.node):
            return
        now = self.timeline.received(ctx, time.monotonic())
        if msg.state is NodeLiveness.OFFLINE:
            transitions = self.tracker.last_will(msg.node, now, boot_id=msg.boot_id)
        else:
            transitions = self.tracker.alive(
                msg.node, now, retained=ctx.retained, via="state", boot_id=msg.boot_id or None
            )
        await self.apply(transitions)

    async def on_heartbeat(self, msg: Heartbeat, ctx: MessageContext) -> None:
        """Usage: coalesced latest-per-node; a sign of life, unless older than one taken."""
        if not self._matches(ctx, msg.node):
            return
        now = self.timeline.received(ctx, time.monotonic())
        if not self.tracker.fresh(msg.node, msg.ts, msg.seq):
            # queued through a partition, or a duplicate: old news, neither stored nor alive
            log.debug("heartbeat older than the newest taken", node=msg.node, seq=msg.seq)
            return
        transitions = self.tracker.alive(
            msg.node, now, retained=ctx.retained, via="heartbeat", interval=msg.interval_s
        )
        await self.apply(transitions)
        usage = msg.usage.model_dump()
        self.writer.heartbeat(
            HeartbeatOp(msg.node, msg.seq, msg.ts, msg.interval_s, usage, time.time())
        )

    async def on_actual(self, msg: ActualState, ctx: MessageContext) -> None:
        """The node's workloads, replacing what it reported before."""
        if not self._matches(ctx, msg.node):
            return
        workloads = [w.model_dump(mode="json") for w in msg.workloads]
        self.writer.put(ActualOp(msg.node, workloads, time.time()))

    async def on_event(self, msg: Event, ctx: MessageContext) -> None:
        """Record the event; the scheduler's app events also update the apps table."""
        ref = ctx.ref
        if ref is None or ref.kind not in (TopicKind.FLEET_EVENT, TopicKind.TENANT_EVENT):
            return
        if msg.source == self.source and ref.kind is TopicKind.FLEET_EVENT:
            return  # our own liveness event, recorded before it was published
        tenant = ref.tenant if ref.kind is TopicKind.TENANT_EVENT else None
        now = time.time()
        self.writer.put(EventOp(event_row(msg, tenant, now)))
        if tenant is not None and msg.kind in _APP_KINDS:
            op = _app_op(msg, tenant, now)
            if op is not None:
                self.writer.put(op)


_APP_KINDS = frozenset({EventKind.APP_DEPLOYED, EventKind.APP_UPDATED, EventKind.APP_DELETED})


def _app_op(event: Event, tenant: str, now: float) -> AppOp | None:
    """The apps-table change an app event makes (None: the event names no app or its payload
    is not an :class:`~fogmesh.protocol.events.AppEventData`)."""
    if not event.app:
        log.warning("app event without an app name", kind=event.kind.value, id=event.id)
        return None
    try:
        data = event.payload_as(AppEventData)
    except ValidationError as exc:
        log.warning("app event with a bad payload", kind=event.kind.value, id=event.id,
                    errors=exc.error_count())  # fmt: skip
        return None
    deleted = event.kind is EventKind.APP_DELETED
    return AppOp(tenant, event.app, data.version, data.manifest or {}, now, deleted=deleted)
