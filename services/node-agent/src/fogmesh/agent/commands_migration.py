"""The migrator's verbs (docs/migrator.md): resource-request, freeze, state-chunk, state-put,
state-receive, state-send, state-drop and thaw (:mod:`fogmesh.agent.commands` routes them).

Their request and reply models are in ``fogmesh.protocol.migration``, and the peer-to-peer
pushes in :mod:`fogmesh.agent.transfer`: both are imported by the first migration verb, never
by an agent that is not asked to migrate (docs/agent.md, "Memory").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from functools import cached_property
from typing import TYPE_CHECKING

import structlog

from fogmesh.agent.commands_access import CommandAccess, P, key_of, refusals, tenant_of
from fogmesh.agent.handover import ChunkRefused, Handover
from fogmesh.agent.runtime.base import InstanceState, workload_key
from fogmesh.bus import MessageContext, Refusal
from fogmesh.protocol import AckReply, ErrorCode

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

__all__ = ["MigrationVerbs"]

log = structlog.get_logger("fogmesh.agent.commands")


class MigrationVerbs(CommandAccess):
    """The handlers of the migrator's verbs: offers, freezing and thawing, and the moves of a
    workload's staged snapshot."""

    @cached_property
    def transfers(self) -> Transfers:
        """The peer-to-peer snapshot pushes (:mod:`fogmesh.agent.transfer`), made by the first
        state verb."""
        from fogmesh.agent.transfer import Transfers

        return Transfers(self.node, self.reconciler.handover)

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
        key = key_of(tracked)
        if not command.hold:  # a replica: the workload runs on; only its snapshot is staged
            with refusals(command.workload):
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
                with refusals(command.workload):
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
        self.transfers.expect(tenant_of(command), command)
        await ctx.reply(AckReply.to(
            command, source=ctx.bus.config.client_id, message=f"expecting {command.snapshot}"
        ))  # fmt: skip

    async def on_state_send(self, command: StateSendCommand, ctx: MessageContext) -> None:
        """Push a staged snapshot of the tenant's to the peer, peer to peer."""
        from fogmesh.agent.transfer import PushFailed
        from fogmesh.protocol.migration import StateSendReply

        tenant = tenant_of(command)
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
        tenant = tenant_of(command)
        key = workload_key(tenant, command.workload)
        self.transfers.forget(tenant, command.workload)
        gone = await asyncio.to_thread(self.reconciler.handover.drop_all, key)
        await ctx.reply(AckReply.to(
            command, source=ctx.bus.config.client_id, message=f"dropped {gone} files of {key}"
        ))  # fmt: skip

    async def on_thaw(self, command: ThawCommand, ctx: MessageContext) -> None:
        """Release a frozen workload: the reconciler starts it here again."""
        tracked, _runtime = self._workload(command, command.workload)
        key = key_of(tracked)
        async with self.reconciler.lock:
            self.reconciler.held.discard(key)
            self.reconciler.handover.drop_out(key)
        self.reconciler.trigger()
        await ctx.reply(
            AckReply.to(command, source=ctx.bus.config.client_id, message=f"thawed {key}")
        )
