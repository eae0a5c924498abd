"""The verbs on one workload and the node's report: logs (and its follow, see
:mod:`fogmesh.agent.log_follow`), upload, download, stop, start, restart and report
(:mod:`fogmesh.agent.commands` routes them).

A tenant's ``stop`` is kept (``Reconciler.stopped``, persisted) so the reconciler leaves the
workload stopped, across agent restarts too, until ``start``; ``restart`` of a stopped
workload starts it and ends the stop.
"""

from __future__ import annotations

import base64
import binascii

import structlog

from fogmesh.agent.commands_access import CommandAccess, P, key_of, refusals
from fogmesh.agent.runtime.base import InstanceState
from fogmesh.bus import MessageContext, Refusal
from fogmesh.protocol import (
    AckReply,
    DownloadCommand,
    DownloadReply,
    ErrorCode,
    LogsCommand,
    LogsReply,
    ReportCommand,
    ReportReply,
    RestartCommand,
    StartCommand,
    StopCommand,
    UploadCommand,
    UploadReply,
)
from fogmesh.protocol.commands import MAX_UPLOAD_BYTES

__all__ = ["WorkloadVerbs"]

log = structlog.get_logger("fogmesh.agent.commands")


class WorkloadVerbs(CommandAccess):
    """The handlers of the verbs that act on one workload (its files, its logs, its running)
    and of ``report``."""

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
        key = key_of(tracked)
        if command.follow_s > 0:

            async def read(tail: int, since: float | None) -> list[str]:
                with refusals(command.workload):
                    return await runtime.logs(key, tail, since)

            self.follows.start(command, ctx, read)
            return
        with refusals(command.workload):
            lines = await runtime.logs(key_of(tracked), command.tail, command.since)
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
        with refusals(command.workload):
            await runtime.put_file(key_of(tracked), command.path, data, command.mode)
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
        with refusals(command.workload):
            data = await runtime.get_file(key_of(tracked), command.path, MAX_UPLOAD_BYTES)
        await ctx.reply(DownloadReply.to(
            command, source=ctx.bus.config.client_id, workload=command.workload,
            path=command.path, size=len(data), content_b64=base64.b64encode(data).decode(),
        ))  # fmt: skip

    async def on_stop(self, command: StopCommand, ctx: MessageContext) -> None:
        """Stop the workload and keep it stopped until ``start`` (STOPPING, STOPPED)."""
        tracked, runtime = self._workload(command, command.workload)
        name, key, who = command.workload, key_of(tracked), command.tenant or "operator"
        async with self.reconciler.lock:
            self.reconciler.stopped.set(key, True)
            machine = tracked.machine
            with refusals(name):
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
        name, key, who = command.workload, key_of(tracked), command.tenant or "operator"
        async with self.reconciler.lock:
            self.reconciler.stopped.set(key, False)
            tracked.failures, tracked.retry_at, tracked.finished = 0, 0.0, False
            machine = tracked.machine
            with refusals(name):
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
        name, key = command.workload, key_of(tracked)
        async with self.reconciler.lock:
            machine = tracked.machine
            if machine.phase in {P.DEFINED, P.REMOVED}:
                raise Refusal(ErrorCode.CONFLICT, f"workload {name!r} has no instance yet")
            with refusals(name):
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
