"""Answers to ``fm/v1/nodes/{node}/cmd/{verb}``: logs (and its follow, see
:mod:`fogmesh.agent.log_follow`), upload, download, stop, start, restart, report, and the
migrator's resource-request, freeze, state-chunk, state-put and thaw (docs/migrator.md).

A tenant's ``stop`` is kept (``Reconciler.stopped``, persisted) so the reconciler leaves the
workload stopped, across agent restarts too, until ``start``; ``restart`` of a stopped
workload starts it and ends the stop.

Authorisation: every command names the tenant it acts for (``tenant`` in the envelope). A
command may touch a workload only when that tenant owns it, else ``unauthorised``. A command
that names no tenant acts as the node's operator (any workload, ``report`` lists all) only when
the agent's config sets ``allow_operator_commands``; otherwise it is refused ``unauthorised``.
The agent trusts the ``tenant`` field as far as the broker's ACLs let a client publish here:
authentication is the broker's job. An unknown workload is ``not_found``; a runtime failure is
``unavailable``; a bad path or a bad base64 body is ``invalid_request``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from importlib import import_module
from typing import TYPE_CHECKING, Any

import structlog

from fogmesh.agent.handover import ChunkRefused, Handover
from fogmesh.agent.log_follow import LogFollows
from fogmesh.agent.reconcile import Reconciler
from fogmesh.agent.runtime.base import InstanceState, Runtime, workload_key
from fogmesh.agent.runtime.errors import InstanceNotFound, RuntimeFailure, UnsafePath
from fogmesh.agent.tracked import Tracked
from fogmesh.bus import Action, Bus, MessageContext, Refusal, RequestRouter
from fogmesh.protocol import (
    AckReply,
    DownloadCommand,
    DownloadReply,
    ErrorCode,
    LogsCommand,
    LogsReply,
    NodeFacts,
    ReportCommand,
    ReportReply,
    Request,
    RestartCommand,
    StartCommand,
    StopCommand,
    UploadCommand,
    UploadReply,
    Usage,
    WorkloadPhase,
    topics,
)
from fogmesh.protocol.commands import MAX_UPLOAD_BYTES, NodeVerb

if TYPE_CHECKING:
    from fogmesh.agent.transfer import Transfers
    from fogmesh.protocol.migration import (
        FreezeCommand,
        ResourceRequest,
        StateChunkCommand,
        StateDropCommand,
        StatePutCommand,
        StateReceiveCommand,
        StateSendCommand,
        ThawCommand,
    )

__all__ = ["VERBS", "CommandHandler"]

log = structlog.get_logger("fogmesh.agent.commands")

VERBS = tuple(NodeVerb)  # named once, in the protocol
P = WorkloadPhase
# An upload carries its file in base64 (4/3 of its size) beside a small envelope; the largest
# body, larger than a state chunk's (tests/agent/test_units.py checks it), so the limit is set
# without the migration contract, which the migration verbs import when first asked
# (docs/agent.md, "Memory").
MAX_COMMAND_PAYLOAD = MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024


def _migration_model(name: str) -> Callable[[], Any]:
    """A migration verb's request model, looked up (and ``fogmesh.protocol.migration``
    imported) by the verb's first request."""
    return lambda: getattr(import_module("fogmesh.protocol.migration"), name)


class CommandHandler:
    """Subscribes to this node's command topics and answers each with its typed reply."""

    def __init__(
        self,
        node: str,
        reconciler: Reconciler,
        *,
        facts: Callable[[], NodeFacts],
        usage: Callable[[], Usage],
        allow_operator: bool,
        stop_timeout: float,
    ) -> None:
        self.node = node
        self.reconciler = reconciler
        self._facts = facts
        self._usage = usage
        self.allow_operator = allow_operator
        self.stop_timeout = stop_timeout
        self.follows = LogFollows()
        self.router = RequestRouter(
            topics.node_cmd_filter(node),
            {
                NodeVerb.LOGS: Action(LogsCommand, self.on_logs),
                NodeVerb.UPLOAD: Action(UploadCommand, self.on_upload),
                NodeVerb.RESTART: Action(RestartCommand, self.on_restart),
                NodeVerb.STOP: Action(StopCommand, self.on_stop),
                NodeVerb.START: Action(StartCommand, self.on_start),
                NodeVerb.DOWNLOAD: Action(DownloadCommand, self.on_download),
                NodeVerb.REPORT: Action(ReportCommand, self.on_report),
                NodeVerb.RESOURCE_REQUEST: Action(
                    _migration_model("ResourceRequest"), self.on_resource_request
                ),
                NodeVerb.FREEZE: Action(_migration_model("FreezeCommand"), self.on_freeze),
                NodeVerb.STATE_CHUNK: Action(
                    _migration_model("StateChunkCommand"), self.on_state_chunk
                ),
                NodeVerb.STATE_PUT: Action(_migration_model("StatePutCommand"), self.on_state_put),
                NodeVerb.THAW: Action(_migration_model("ThawCommand"), self.on_thaw),
                NodeVerb.STATE_RECEIVE: Action(
                    _migration_model("StateReceiveCommand"), self.on_state_receive
                ),
                NodeVerb.STATE_SEND: Action(
                    _migration_model("StateSendCommand"), self.on_state_send, background=True
                ),
                NodeVerb.STATE_DROP: Action(
                    _migration_model("StateDropCommand"), self.on_state_drop
                ),
            },
            what="command",
            max_payload=MAX_COMMAND_PAYLOAD,
        )

    @cached_property
    def transfers(self) -> Transfers:
        """The peer-to-peer snapshot pushes (:mod:`fogmesh.agent.transfer`), made by the first
        state verb."""
        from fogmesh.agent.transfer import Transfers

        return Transfers(self.node, self.reconciler.handover)

    def register(self, bus: Bus) -> None:
        """Serve the verbs on ``bus`` under ``fm/v1/nodes/{node}/cmd/+``."""
        self.router.attach(bus)

    # -- authorisation ------------------------------------------------------------------------

    def _check_tenant(self, command: Request) -> None:
        if command.tenant is None and not self.allow_operator:
            raise Refusal(
                ErrorCode.UNAUTHORISED,
                "a command must name its tenant (operator commands are disabled on this node)",
            )

    def _workload(self, command: Request, name: str) -> tuple[Tracked, Runtime]:
        self._check_tenant(command)
        tracked = self._find(command.tenant, name)
        if tracked is None or tracked.machine.phase is P.REMOVED:
            raise Refusal(ErrorCode.NOT_FOUND, f"no workload {name!r} on node {self.node!r}")
        if command.tenant is not None and command.tenant != tracked.spec.tenant:
            log.warning(
                "command refused: tenant does not own the workload",
                tenant=command.tenant,
                workload=name,
            )
            raise Refusal(
                ErrorCode.UNAUTHORISED,
                f"tenant {command.tenant!r} does not own workload {name!r}",
            )
        runtime = self.reconciler.runtimes.get(tracked.spec.runtime)
        if runtime is None:
            raise Refusal(
                ErrorCode.UNAVAILABLE, f"runtime {tracked.spec.runtime.value} is not available"
            )
        return tracked, runtime

    def _find(self, tenant: str | None, name: str) -> Tracked | None:
        """A tenant's workload by its (tenant, name) key; for the operator (no tenant), the one
        workload of that name (two tenants' equal names: the operator must name the tenant)."""
        found = [t for t in self.reconciler.tracked.values() if t.spec.name == name]
        if tenant is not None:
            own = self.reconciler.tracked.get(workload_key(tenant, name))
            # another tenant's workload of that name is refused (unauthorised) by the caller
            return own if own is not None else (found[0] if found else None)
        if len(found) > 1:
            raise Refusal(
                ErrorCode.CONFLICT, f"several tenants have a workload {name!r}; name the tenant"
            )
        return found[0] if found else None

    # -- verbs --------------------------------------------------------------------------------

    async def on_logs(self, command: LogsCommand, ctx: MessageContext) -> None:
        """The last ``tail`` lines (since ``since``); a stream with ``follow_s``; the end of
        a follow with ``end_follow``."""
        if command.end_follow is not None:
            self._check_tenant(command)
            if not self.follows.end(command.tenant or "", command.end_follow):
                raise Refusal(ErrorCode.NOT_FOUND, f"no log follow {command.end_follow!r}")
            await ctx.reply(LogsReply.to(
                command, source=ctx.bus.config.client_id, workload=command.workload, lines=[]
            ))  # fmt: skip
            return
        tracked, runtime = self._workload(command, command.workload)
        key = _key(tracked)
        if command.follow_s > 0:

            async def read(tail: int, since: float | None) -> list[str]:
                with _refusals(command.workload):
                    return await runtime.logs(key, tail, since)

            self.follows.start(command, ctx, read)
            return
        with _refusals(command.workload):
            lines = await runtime.logs(_key(tracked), command.tail, command.since)
        await ctx.reply(
            LogsReply.to(
                command, source=ctx.bus.config.client_id, workload=command.workload, lines=lines
            )
        )

    async def on_upload(self, command: UploadCommand, ctx: MessageContext) -> None:
        """Decode and write the file into the workload."""
        tracked, runtime = self._workload(command, command.workload)
        try:
            data = base64.b64decode(command.content_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Refusal(ErrorCode.INVALID_REQUEST, f"content_b64 is not base64: {exc}") from exc
        if len(data) > MAX_UPLOAD_BYTES:
            raise Refusal(ErrorCode.INVALID_REQUEST, f"file exceeds {MAX_UPLOAD_BYTES} bytes")
        with _refusals(command.workload):
            await runtime.put_file(_key(tracked), command.path, data, command.mode)
        await ctx.reply(
            UploadReply.to(
                command,
                source=ctx.bus.config.client_id,
                workload=command.workload,
                path=command.path,
                size=len(data),
            )
        )

    async def on_download(self, command: DownloadCommand, ctx: MessageContext) -> None:
        """Read one file out of the workload."""
        tracked, runtime = self._workload(command, command.workload)
        with _refusals(command.workload):
            data = await runtime.get_file(_key(tracked), command.path, MAX_UPLOAD_BYTES)
        await ctx.reply(DownloadReply.to(
            command, source=ctx.bus.config.client_id, workload=command.workload,
            path=command.path, size=len(data), content_b64=base64.b64encode(data).decode(),
        ))  # fmt: skip

    async def on_stop(self, command: StopCommand, ctx: MessageContext) -> None:
        """Stop the workload and keep it stopped until ``start`` (STOPPING, STOPPED)."""
        tracked, runtime = self._workload(command, command.workload)
        name, key, who = command.workload, _key(tracked), command.tenant or "operator"
        async with self.reconciler.lock:
            self.reconciler.stopped.set(key, True)
            machine = tracked.machine
            with _refusals(name):
                status = await runtime.status(key)
                if status.state is InstanceState.RUNNING:
                    if machine.phase in {P.RUNNING, P.STARTING, P.PAUSED}:
                        machine.move(P.STOPPING, f"stop requested by {who}")
                    await runtime.stop(key, self.stop_timeout)
                if machine.can(P.STOPPED):
                    machine.move(P.STOPPED, f"stopped by {who}")
        log.info("workload stopped on request", workload=name, tenant=command.tenant)
        await ctx.reply(
            AckReply.to(command, source=ctx.bus.config.client_id, message=f"stopped {name}")
        )

    async def on_start(self, command: StartCommand, ctx: MessageContext) -> None:
        """End a ``stop`` and start the workload's instance (STARTING, RUNNING); one without an
        instance is left to the reconciler, which creates it."""
        tracked, runtime = self._workload(command, command.workload)
        name, key, who = command.workload, _key(tracked), command.tenant or "operator"
        async with self.reconciler.lock:
            self.reconciler.stopped.set(key, False)
            tracked.failures, tracked.retry_at, tracked.finished = 0, 0.0, False
            machine = tracked.machine
            with _refusals(name):
                status = await runtime.status(key)
                if status.state not in {InstanceState.ABSENT, InstanceState.RUNNING}:
                    machine.drive_to(P.STARTING, f"start requested by {who}")
                    started = await runtime.start(key)
                    tracked.runtime_id = started.runtime_id
                    if started.state is InstanceState.RUNNING:
                        machine.move(P.RUNNING, "")
        self.reconciler.trigger()
        await ctx.reply(
            AckReply.to(command, source=ctx.bus.config.client_id, message=f"started {name}")
        )

    async def on_restart(self, command: RestartCommand, ctx: MessageContext) -> None:
        """Stop and start the workload (its phases: STOPPING, STOPPED, STARTING, RUNNING)."""
        tracked, runtime = self._workload(command, command.workload)
        name, key = command.workload, _key(tracked)
        async with self.reconciler.lock:
            machine = tracked.machine
            if machine.phase in {P.DEFINED, P.REMOVED}:
                raise Refusal(ErrorCode.CONFLICT, f"workload {name!r} has no instance yet")
            with _refusals(name):
                status = await runtime.status(key)
                if status.state is InstanceState.ABSENT:
                    raise Refusal(ErrorCode.CONFLICT, f"workload {name!r} has no instance now")
                if machine.phase in {P.RUNNING, P.STARTING, P.PAUSED}:
                    machine.move(P.STOPPING, f"restart requested by {command.tenant or 'operator'}")
                    await runtime.stop(key, self.stop_timeout)
                    machine.move(P.STOPPED, "restarting")
                elif status.state is InstanceState.RUNNING:
                    await runtime.stop(key, self.stop_timeout)
                machine.drive_to(P.STARTING, "restarting")
                started = await runtime.start(key)
            self.reconciler.stopped.set(key, False)  # a restart ends a tenant's stop
            tracked.restarts += 1
            tracked.runtime_id = started.runtime_id
            tracked.finished = False
            if started.state is InstanceState.RUNNING:
                machine.move(P.RUNNING, "")
        self.reconciler.trigger()
        await ctx.reply(
            AckReply.to(command, source=ctx.bus.config.client_id, message=f"restarted {name}")
        )

    async def on_report(self, command: ReportCommand, ctx: MessageContext) -> None:
        """Facts, usage and the asking tenant's workloads (all of them for the operator)."""
        self._check_tenant(command)
        await ctx.reply(
            ReportReply.to(
                command,
                source=ctx.bus.config.client_id,
                node=self.node,
                facts=self._facts(),
                usage=self._usage(),
                workloads=self.reconciler.statuses(command.tenant),
            )
        )

    # -- migration ----------------------------------------------------------------------------

    async def on_resource_request(self, command: ResourceRequest, ctx: MessageContext) -> None:
        """The paper's level: 2 runs it now (runtime, CPU and memory by what the workloads here
        are limited to, disk for its state), 1 can store it and its state, 0 relays only."""
        from fogmesh.protocol.migration import PeerLevel, ResourceOffer

        self._check_tenant(command)
        facts, usage = self._facts(), self._usage()
        tracked = self.reconciler.tracked.values()
        specs = [t.spec for t in tracked if t.machine.phase is not P.REMOVED]
        cpu_free = facts.cpu_count - sum(s.cpu_limit or 0.0 for s in specs)
        mem_free = min(
            facts.memory_bytes - sum(s.memory_limit_bytes or 0 for s in specs),
            usage.memory_total_bytes - usage.memory_used_bytes,
        )
        disk_free = usage.disk_total_bytes - usage.disk_used_bytes
        level, reason = PeerLevel.RUN, ""
        if command.state_bytes * 2 > disk_free:
            level, reason = PeerLevel.RELAY, f"disk: {disk_free} bytes free"
        elif command.runtime not in {k.value for k in self.reconciler.runtimes}:
            level, reason = PeerLevel.STORE, f"runtime {command.runtime} not available"
        elif command.cpu > cpu_free + 1e-9:
            level, reason = PeerLevel.STORE, f"cpu: {cpu_free:g} cores free"
        elif command.memory_bytes > mem_free:
            level, reason = PeerLevel.STORE, f"memory: {mem_free} bytes free"
        await ctx.reply(ResourceOffer.to(
            command, source=ctx.bus.config.client_id, node=self.node, level=level, reason=reason
        ))  # fmt: skip

    async def on_freeze(self, command: FreezeCommand, ctx: MessageContext) -> None:
        """Hold the workload, stop it (its files are then consistent: state is files, not
        memory) and stage its snapshot."""
        from fogmesh.protocol.migration import FrozenReply

        tracked, runtime = self._workload(command, command.workload)
        key = _key(tracked)
        if not command.hold:  # a replica: the workload runs on; only its snapshot is staged
            with _refusals(command.workload):
                data = await runtime.snapshot(key)
            snapshot, size, digest = await asyncio.to_thread(
                self.reconciler.handover.stage_out, key, data
            )
            await ctx.reply(FrozenReply.to(
                command, source=ctx.bus.config.client_id, workload=command.workload,
                snapshot=snapshot, size=size, sha256=digest,
            ))  # fmt: skip
            return
        async with self.reconciler.lock:
            self.reconciler.held.add(key)
            machine = tracked.machine
            try:
                with _refusals(command.workload):
                    status = await runtime.status(key)
                    if status.state is InstanceState.RUNNING:
                        if machine.phase in {P.RUNNING, P.STARTING, P.PAUSED}:
                            machine.move(P.STOPPING, "frozen for a migration")
                        await runtime.stop(key, self.stop_timeout)
                        if machine.can(P.STOPPED):
                            machine.move(P.STOPPED, "frozen for a migration")
                    data = await runtime.snapshot(key)
            except BaseException:
                self.reconciler.held.discard(key)
                self.reconciler.trigger()
                raise
            snapshot, size, digest = await asyncio.to_thread(
                self.reconciler.handover.stage_out, key, data
            )
        log.info("workload frozen for a migration", workload=command.workload, bytes=size)
        await ctx.reply(FrozenReply.to(
            command, source=ctx.bus.config.client_id, workload=command.workload,
            snapshot=snapshot, size=size, sha256=digest,
        ))  # fmt: skip

    async def on_state_chunk(self, command: StateChunkCommand, ctx: MessageContext) -> None:
        """One chunk of a staged snapshot."""
        from fogmesh.protocol.migration import StateChunkReply

        self._check_tenant(command)
        handover = self.reconciler.handover
        try:
            data = await asyncio.to_thread(
                handover.read_chunk, command.snapshot, command.offset, command.length
            )
        except OSError as exc:
            raise Refusal(ErrorCode.NOT_FOUND, f"no staged snapshot {command.snapshot!r}") from exc
        await ctx.reply(StateChunkReply.to(
            command, source=ctx.bus.config.client_id, snapshot=command.snapshot,
            offset=command.offset, data_b64=base64.b64encode(data).decode(),
            sha256=hashlib.sha256(data).hexdigest(),
        ))  # fmt: skip

    async def on_state_put(self, command: StatePutCommand, ctx: MessageContext) -> None:
        """Take one chunk of a snapshot for a workload this node is about to run."""
        from fogmesh.protocol.migration import StatePutReply

        self._check_tenant(command)
        tenant = command.tenant
        if tenant is None:
            raise Refusal(ErrorCode.INVALID_REQUEST, "state-put must name the workload's tenant")
        key = workload_key(tenant, command.workload)
        if self.transfers.admit(tenant, command):  # only a handover this node was told about
            await ctx.reply(StatePutReply.to(  # all in already: nothing more is written
                command, source=ctx.bus.config.client_id, next_offset=command.size, complete=True
            ))  # fmt: skip
            return
        try:
            data = base64.b64decode(command.data_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Refusal(ErrorCode.INVALID_REQUEST, f"data_b64 is not base64: {exc}") from exc
        if command.offset + len(data) > command.size:
            raise Refusal(ErrorCode.INVALID_REQUEST, "the chunk runs past the snapshot's size")
        handover = self.reconciler.handover
        try:
            if command.offset == 0 and data:
                handover.drop_ready(key)  # a new transfer replaces an older staged snapshot
            following = await asyncio.to_thread(
                handover.put_chunk, key, command.snapshot, command.offset, data, command.sha256
            )
            done = await asyncio.to_thread(
                handover.complete, key, command.snapshot, command.size, command.sha256_total
            )
        except ChunkRefused as exc:
            log.warning("state chunk refused", workload=command.workload, error=str(exc))
            raise Refusal(ErrorCode.INVALID_REQUEST, str(exc)) from exc
        if done:
            self.transfers.received(tenant, command.workload)
        await ctx.reply(StatePutReply.to(
            command, source=ctx.bus.config.client_id,
            next_offset=command.size if done else following, complete=done,
        ))  # fmt: skip

    async def on_state_receive(self, command: StateReceiveCommand, ctx: MessageContext) -> None:
        """Expect a snapshot pushed by ``from_node`` (fogmesh.agent.transfer)."""
        self.transfers.expect(_tenant_of(command), command)
        await ctx.reply(AckReply.to(
            command, source=ctx.bus.config.client_id, message=f"expecting {command.snapshot}"
        ))  # fmt: skip

    async def on_state_send(self, command: StateSendCommand, ctx: MessageContext) -> None:
        """Push a staged snapshot of the tenant's to the peer, peer to peer."""
        from fogmesh.agent.transfer import PushFailed
        from fogmesh.protocol.migration import StateSendReply

        tenant = _tenant_of(command)
        if not Handover.is_snapshot_of(workload_key(tenant, command.workload), command.snapshot):
            raise Refusal(ErrorCode.UNAUTHORISED, "the snapshot is not that workload's")
        try:
            resumed_at, sent = await self.transfers.push(ctx.bus, tenant, command)
        except PushFailed as exc:
            raise Refusal(ErrorCode.UNAVAILABLE, f"state-send: {exc}") from exc
        except OSError as exc:
            raise Refusal(ErrorCode.NOT_FOUND, f"no staged snapshot {command.snapshot!r}") from exc
        await ctx.reply(StateSendReply.to(
            command, source=ctx.bus.config.client_id, workload=command.workload,
            snapshot=command.snapshot, resumed_at=resumed_at, sent_bytes=sent,
        ))  # fmt: skip

    async def on_state_drop(self, command: StateDropCommand, ctx: MessageContext) -> None:
        """Forget every staged snapshot of the tenant's workload (never restored after)."""
        tenant = _tenant_of(command)
        key = workload_key(tenant, command.workload)
        self.transfers.forget(tenant, command.workload)
        gone = await asyncio.to_thread(self.reconciler.handover.drop_all, key)
        await ctx.reply(AckReply.to(
            command, source=ctx.bus.config.client_id, message=f"dropped {gone} files of {key}"
        ))  # fmt: skip

    async def on_thaw(self, command: ThawCommand, ctx: MessageContext) -> None:
        """Release a frozen workload: the reconciler starts it here again."""
        tracked, _runtime = self._workload(command, command.workload)
        key = _key(tracked)
        async with self.reconciler.lock:
            self.reconciler.held.discard(key)
            self.reconciler.handover.drop_out(key)
        self.reconciler.trigger()
        await ctx.reply(
            AckReply.to(command, source=ctx.bus.config.client_id, message=f"thawed {key}")
        )


def _tenant_of(command: Request) -> str:
    if command.tenant is None:
        raise Refusal(ErrorCode.INVALID_REQUEST, "a state command must name its workload's tenant")
    return command.tenant


def _key(tracked: Tracked) -> str:
    return workload_key(tracked.spec.tenant, tracked.spec.name)


@contextmanager
def _refusals(workload: str) -> Iterator[None]:
    """Turn runtime failures inside the block into error replies."""
    try:
        yield
    except InstanceNotFound as exc:
        raise Refusal(ErrorCode.NOT_FOUND, f"{workload}: {exc}") from exc
    except UnsafePath as exc:
        raise Refusal(ErrorCode.INVALID_REQUEST, f"{workload}: {exc}") from exc
    except RuntimeFailure as exc:
        raise Refusal(ErrorCode.UNAVAILABLE, f"{workload}: {exc}") from exc
