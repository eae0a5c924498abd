"""The scheduler service on the bus.

It follows every node (hello, state, heartbeat, actual, and the retained desired states to learn
their generations), answers the apps API on ``fm/v1/api/{tenant}/apps/{action}`` and is the only
writer of ``fm/v1/nodes/{node}/desired`` while it holds the ``scheduler`` lease; a standby
instance follows the fleet too but answers nothing and writes nothing. The migrator's
``move`` comes on ``fm/v1/ops/scheduler/move``, where only service accounts may publish.

Every app is also a retained record on ``fm/v1/store/scheduler/{tenant}/{app}``
(:mod:`fogmesh.protocol.appstore`): the leader writes it before it answers, every instance keeps
the newest of each, so a standby with a state dir of its own takes over with every app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from fogmesh.bus import Action, Bus, MessageContext, Refusal, RequestRouter
from fogmesh.protocol import NotConnectedError, topics
from fogmesh.protocol.apps import (
    APPS_RESOURCE,
    AppAction,
    AppDeletedReply,
    AppListReply,
    AppReply,
    DeleteApp,
    DeployApp,
    GetApp,
    ListApps,
    ScaleApp,
    UpdateApp,
)
from fogmesh.protocol.appstore import APP_RECORDS_FILTER, StoredApp, app_record_topic
from fogmesh.protocol.artefacts import url_sources
from fogmesh.protocol.commands import AckReply
from fogmesh.protocol.envelope import Reply, Request
from fogmesh.protocol.errors import ErrorCode
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.mesh import LinkStatus
from fogmesh.protocol.migration import HOLDERS_VERB, MoveReply, MoveWorkload, ReplicaHolders
from fogmesh.protocol.node import Heartbeat, NodeHello, NodeStateMessage
from fogmesh.protocol.topics import NodeChannel
from fogmesh.protocol.workload import ActualState, DesiredState
from fogmesh.scheduler.alarms import NotRunningWatch
from fogmesh.scheduler.artefact_check import ArtefactCheck
from fogmesh.scheduler.changes import Changes
from fogmesh.scheduler.config import SchedulerConfig
from fogmesh.scheduler.nodes import NodeTracker
from fogmesh.scheduler.ops import Operations
from fogmesh.scheduler.sites import adopt_site_write, pinned_on
from fogmesh.scheduler.store import NO_STAMP, Stamp, Store
from fogmesh.service import LeaderDuty, LeaderService

__all__ = ["SchedulerService"]

log = structlog.get_logger("fogmesh.scheduler")
Q = TypeVar("Q", bound=Request)
RETRY_PENDING_EVERY_S = 10.0


class SchedulerService(LeaderService):
    """One scheduler instance: leader or standby, decided by the lease."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.store = Store(config.state_dir)
        self.store.load()
        self.tracker = NodeTracker(
            default_interval_s=config.heartbeat_interval_s,
            stale_after=config.stale_after,
            offline_after=config.offline_after,
        )
        self.ops = Operations(self.store, self.tracker, config)
        self.alarms = NotRunningWatch(self.store, self.tracker, config.not_running_alarm_s)
        self.lock = asyncio.Lock()
        self.seen_desired: dict[str, DesiredState] = {}
        self._unsent: set[str] = set()
        """Nodes whose latest desired state could not be written yet (bus down, or not leader)."""
        self._unsent_apps: set[str] = set()
        """Apps whose record could not be written yet."""
        self._on_bus: dict[str, Stamp] = {}
        """The newest stamp of each app's record seen on the bus."""
        self._unsaved = False
        """A standby took records from the bus that its file does not hold yet."""
        self.bus: Bus | None = None
        self.refs = ArtefactCheck(lambda: self.bus, config.artefact_check_timeout_s)
        self.duty = LeaderDuty("scheduler", config, self._on_gain)
        self.ready = asyncio.Event()
        """Set once this instance leads and has published what its store says."""
        self._retry_version = -1
        self._retry_at = 0.0
        self.api = RequestRouter(
            topics.api_filter(APPS_RESOURCE), self._actions(), what="apps action",
            guard=lambda: self.leader,  # a standby stays silent; the leader answers
        )  # fmt: skip
        self.ops_api = RequestRouter(
            topics.ops_filter("scheduler"), self._ops_actions(), what="scheduler ops action",
            guard=lambda: self.leader,
        )  # fmt: skip

    async def run(self) -> None:
        """Run until cancelled; leaving cancels every loop and waits for it (TaskGroup)."""
        async with Bus(self.config.bus_config()) as bus:
            self.bus = bus
            await self.duty.run(bus, self._subscribe, tick=self._tick_loop)

    def _subscribe(self, bus: Bus) -> None:
        bus.subscribe(topics.node_filter(NodeChannel.HELLO), NodeHello, self._on_hello)
        bus.subscribe(topics.node_filter(NodeChannel.STATE), NodeStateMessage, self._on_state)
        bus.subscribe(topics.node_filter(NodeChannel.HEARTBEAT), Heartbeat, self._on_heartbeat)
        bus.subscribe(topics.node_filter(NodeChannel.ACTUAL), ActualState, self._on_actual)
        bus.subscribe(topics.node_filter(NodeChannel.DESIRED), DesiredState, self._on_desired)
        bus.subscribe(topics.mesh_link_filter(), LinkStatus, self._on_link)
        bus.subscribe(APP_RECORDS_FILTER, StoredApp, self._on_app_record)
        self.api.attach(bus)
        self.ops_api.attach(bus)

    def _actions(self) -> dict[str, Action[Any]]:
        api = self._api
        return {
            AppAction.DEPLOY.value: Action(DeployApp, api(self._deploy)),
            AppAction.UPDATE.value: Action(UpdateApp, api(self._update)),
            AppAction.SCALE.value: Action(ScaleApp, api(self._scale)),
            AppAction.DELETE.value: Action(DeleteApp, api(self._delete)),
            AppAction.LIST.value: Action(ListApps, api(self._list)),
            AppAction.GET.value: Action(GetApp, api(self._get)),
        }

    def _ops_actions(self) -> dict[str, Action[Any]]:
        # Not on the tenant's apps API: a tenant could re-home its replicas past the migrator's
        # checks (state transfer, cool-down, budget); fm/v1/ops is granted to services only.
        return {
            AppAction.MOVE.value: Action(MoveWorkload, self._ops(self._move)),
            HOLDERS_VERB: Action(ReplicaHolders, self._ops(self._holders)),
        }

    # --- the fleet -----------------------------------------------------------------------------

    async def _on_hello(self, msg: NodeHello, ctx: MessageContext) -> None:
        self.tracker.on_hello(msg)

    async def _on_state(self, msg: NodeStateMessage, ctx: MessageContext) -> None:
        self.tracker.on_state(msg.node, msg.state)

    async def _on_heartbeat(self, msg: Heartbeat, ctx: MessageContext) -> None:
        self.tracker.on_heartbeat(msg)

    async def _on_link(self, msg: LinkStatus, ctx: MessageContext) -> None:
        self.tracker.on_link(msg)

    async def _on_actual(self, msg: ActualState, ctx: MessageContext) -> None:
        self.tracker.on_actual(msg)

    async def _on_desired(self, msg: DesiredState, ctx: MessageContext) -> None:
        seen = self.seen_desired.get(msg.node)
        if seen is None or msg.generation >= seen.generation:
            self.seen_desired[msg.node] = msg
        if msg.site_writer is not None and self.leader:  # a cut-off site's own move: adopt it
            async with self.lock:
                changes = Changes()
                if adopt_site_write(self.store, msg, changes):
                    await self._apply(changes)

    async def _on_app_record(self, msg: StoredApp, ctx: MessageContext) -> None:
        key = Store.key(msg.tenant, msg.name)
        self._on_bus[key] = max(self._on_bus.get(key, NO_STAMP), msg.stamp)
        if msg.stamp <= self.store.stamp(key):
            return  # our own write coming back, or an older copy
        async with self.lock:
            taken, old = self.store.take(msg)
            if not taken:
                return
            log.info("app record taken from the bus", app=key, term=msg.term, seq=msg.seq,
                     deleted=msg.app is None, writer=msg.source)  # fmt: skip
            self._unsaved = True
            if self.leader:
                # another writer's newer version (a leader this one did not know of): the
                # nodes of both versions get their desired states again
                changes = Changes()
                for rec in (old, msg.app):
                    if rec:
                        changes.dirty.update(p.node for p in rec.placements if p.node)
                await self._apply(changes)

    # --- leadership and the periodic work ------------------------------------------------------

    async def _on_gain(self, term: int) -> None:
        """Take over: fold the file into the store (the bus's records are in it already), write
        the records the bus lacks, then make each node's desired state match the store."""
        async with self.lock:
            self.store.merge_file()
            doc = self.store.doc
            # apps the bus has no copy of, or an older one (a file from before the records, a
            # write the last leader could not make): written again under this term
            stale = {
                key for key in doc.apps.keys() | doc.stamps.keys()
                if self.store.stamp(key) > self._on_bus.get(key, NO_STAMP)
                or (key in doc.apps and self.store.stamp(key) <= (0, 0))
            }  # fmt: skip
            adopted = Changes()  # what cut-off sites did while no one led (sites.py)
            for seen in list(self.seen_desired.values()):
                adopt_site_write(self.store, seen, adopted)
            stale |= adopted.apps
            nodes = {p.node for _, p in self.store.placements() if p.node is not None}
            nodes |= {n for n, d in self.seen_desired.items() if d.workloads}
            dirty = {
                n for n in nodes
                if n not in self.seen_desired
                or self.seen_desired[n].workloads != self.store.specs_for(n)
            }  # fmt: skip
            await self._apply(Changes(dirty=dirty | adopted.dirty, apps=stale,
                                      events=adopted.events))  # fmt: skip
        log.info(
            "scheduler leads", term=term, republished=len(dirty), apps=len(doc.apps),
            records_written=len(stale),
        )  # fmt: skip
        self.ready.set()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            if not self.leader:
                self.ready.clear()
                if self._unsaved:
                    self._unsaved = False
                    self.store.save()
                continue
            async with self.lock:
                now = time.monotonic()
                retry = self.tracker.version != self._retry_version or now >= self._retry_at
                if retry:
                    self._retry_version = self.tracker.version
                    self._retry_at = now + RETRY_PENDING_EVERY_S
                changes = Changes()
                if bus_up := (self.bus is not None and self.bus.connected):
                    changes.dirty.update(self._unsent)  # desired states not yet written
                    self._unsent.clear()
                    changes.apps.update(self._unsent_apps)
                    self._unsent_apps.clear()
                self.ops.heal(changes, retry_pending=retry and bus_up)
                changes.events.extend(self.alarms.check())
                await self._apply(changes)

    async def _apply(self, changes: Changes) -> None:
        """Save the store, then publish the changed apps' records, the dirty nodes' desired
        states and the events."""
        if not (changes.dirty or changes.events or changes.apps):
            return
        bus = self.bus
        assert bus is not None
        term = self.lease.term if self.lease is not None else 0
        records = [self.store.record(key, term) for key in sorted(changes.apps)]
        gens = self.store.doc.generations
        desired = []
        for node in sorted(changes.dirty):
            seen = self.seen_desired.get(node)
            gen = max(gens.get(node, 0), seen.generation if seen else 0) + 1
            gens[node] = gen
            desired.append(
                DesiredState(
                    node=node,
                    generation=gen,
                    workloads=self.store.specs_for(node),
                    pinned=pinned_on(self.store, node),
                    source=self.config.client_id,
                )
            )
        self.store.save()
        self._unsaved = False
        for rec in records:
            # before the desired states and the answer: a standby that takes over has the app
            key = Store.key(rec.tenant, rec.name)
            if not self.leader:
                self._unsent_apps.add(key)
                continue
            try:
                await bus.publish(
                    app_record_topic(rec.tenant, rec.name),
                    rec.model_copy(update={"source": self.config.client_id}),
                    retain=True,
                    queue=False,
                )
            except NotConnectedError:
                self._unsent_apps.add(key)
                continue
            self._unsent_apps.discard(key)
            self._on_bus[key] = max(self._on_bus.get(key, NO_STAMP), rec.stamp)
        for state in desired:
            # Only a connected leader writes desired state, and never through the outbox: a
            # deposed leader's queued writes must not land after a new leader's.
            if not self.leader:
                self._unsent.add(state.node)
                continue
            try:
                await bus.publish(
                    topics.node(state.node, NodeChannel.DESIRED), state, retain=True, queue=False
                )
            except NotConnectedError:
                self._unsent.add(state.node)
                continue
            self._unsent.discard(state.node)
            self.seen_desired[state.node] = state
        for tenant, event in changes.events:
            stamped = event.model_copy(update={"source": self.config.client_id})
            await bus.publish(topics.tenant_event(tenant, event.kind.value), stamped)

    # --- the apps API --------------------------------------------------------------------------

    def _api(
        self, action: Callable[[str, Q, Changes], Awaitable[Reply]]
    ) -> Callable[[Q, MessageContext], Awaitable[None]]:
        async def handler(request: Q, ctx: MessageContext) -> None:
            tenant = ctx.ref.tenant if ctx.ref is not None else None
            if tenant is None:
                raise Refusal(ErrorCode.INVALID_REQUEST, f"no tenant in topic {ctx.topic}")
            if request.tenant is not None and request.tenant != tenant:
                raise Refusal(ErrorCode.UNAUTHORISED, "a tenant may act only on its own apps")
            if isinstance(request, DeployApp | UpdateApp):  # asks the store: not under the lock
                await self.refs.check(tenant, request.manifest)
            await self._answer(tenant, request, ctx, action)

        return handler

    def _ops(
        self, action: Callable[[str, Q, Changes], Awaitable[Reply]]
    ) -> Callable[[Q, MessageContext], Awaitable[None]]:
        """A service's request on ``fm/v1/ops/scheduler``: the tenant is the request's own."""

        async def handler(request: Q, ctx: MessageContext) -> None:
            if request.tenant is None:
                raise Refusal(ErrorCode.INVALID_REQUEST, "an ops request must name its tenant")
            await self._answer(request.tenant, request, ctx, action)

        return handler

    async def _answer(
        self,
        tenant: str,
        request: Q,
        ctx: MessageContext,
        action: Callable[[str, Q, Changes], Awaitable[Reply]],
    ) -> None:
        async with self.lock:
            changes = Changes()
            answer = await action(tenant, request, changes)
            await self._apply(changes)
        await ctx.reply(answer.model_copy(update={"source": self.config.client_id}))

    @staticmethod
    def _own_manifest(tenant: str, manifest: AppManifest) -> AppManifest:
        if manifest.tenant is not None and manifest.tenant != tenant:
            raise Refusal(ErrorCode.UNAUTHORISED, "the manifest names another tenant")
        return manifest.model_copy(update={"tenant": tenant})

    def _check_sources(self, tenant: str, manifest: AppManifest) -> None:
        fetched = url_sources(manifest)
        if fetched and tenant not in self.config.artefact_url_tenants:
            raise Refusal(
                ErrorCode.UNAUTHORISED,
                f"tenant {tenant} may not fetch artefacts by URL ({'; '.join(fetched)[:300]}): "
                "push the file with `fogmesh push` and name its ref",
            )

    async def _deploy(self, tenant: str, req: DeployApp, changes: Changes) -> AppReply:
        self._check_sources(tenant, req.manifest)
        rec = self.ops.deploy(tenant, self._own_manifest(tenant, req.manifest), changes)
        return AppReply.to(req, app=rec.info())

    async def _update(self, tenant: str, req: UpdateApp, changes: Changes) -> AppReply:
        self._check_sources(tenant, req.manifest)
        rec = self.ops.update(tenant, self._own_manifest(tenant, req.manifest), changes)
        return AppReply.to(req, app=rec.info())

    async def _scale(self, tenant: str, req: ScaleApp, changes: Changes) -> AppReply:
        rec = self.ops.scale(tenant, req.app, req.component, req.replicas, changes)
        return AppReply.to(req, app=rec.info())

    async def _delete(self, tenant: str, req: DeleteApp, changes: Changes) -> AppDeletedReply:
        removed = self.ops.delete(tenant, req.app, changes)
        return AppDeletedReply.to(req, app=req.app, removed=removed)

    async def _list(self, tenant: str, req: ListApps, changes: Changes) -> AppListReply:
        apps = [self.alarms.summary(a) for a in self.store.doc.apps.values() if a.tenant == tenant]
        return AppListReply.to(req, apps=sorted(apps, key=lambda a: a.name))

    async def _get(self, tenant: str, req: GetApp, changes: Changes) -> AppReply:
        return AppReply.to(req, app=self.alarms.info(self.ops.get(tenant, req.app)))

    async def _holders(self, tenant: str, req: ReplicaHolders, changes: Changes) -> AckReply:
        self.ops.set_holders(tenant, req)
        return AckReply.to(req, message=f"{len(req.holders)} holders of {req.workload}")

    async def _move(self, tenant: str, req: MoveWorkload, changes: Changes) -> MoveReply:
        source, target = self.ops.move(tenant, req, changes)
        return MoveReply.to(req, workload=req.workload, from_node=source, to_node=target)
