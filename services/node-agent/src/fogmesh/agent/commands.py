"""Answers to ``fm/v1/nodes/{node}/cmd/{verb}``: logs, upload, restart, report.

Authorisation: every command names the tenant it acts for (``tenant`` in the envelope). A
command may touch a workload only when that tenant owns it, else ``unauthorised``. A command
that names no tenant acts as the node's operator (any workload, ``report`` lists all) only when
the agent's config sets ``allow_operator_commands``; otherwise it is refused ``unauthorised``.
The agent trusts the ``tenant`` field as far as the broker's ACLs let a client publish here:
authentication is the broker's job. An unknown workload is ``not_found``; a runtime failure is
``unavailable``; a bad path or a bad base64 body is ``invalid_request``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

from fogmesh.agent.reconcile import Reconciler
from fogmesh.agent.runtime.base import InstanceState, Runtime, workload_key
from fogmesh.agent.runtime.errors import InstanceNotFound, RuntimeFailure, UnsafePath
from fogmesh.agent.tracked import Tracked
from fogmesh.bus import Action, Bus, MessageContext, Refusal, RequestRouter
from fogmesh.protocol import (
    AckReply,
    ErrorCode,
    LogsCommand,
    LogsReply,
    NodeFacts,
    ReportCommand,
    ReportReply,
    Request,
    RestartCommand,
    UploadCommand,
    UploadReply,
    Usage,
    WorkloadPhase,
    topics,
)
from fogmesh.protocol.commands import MAX_UPLOAD_BYTES, NodeVerb

__all__ = ["VERBS", "CommandHandler"]

log = structlog.get_logger("fogmesh.agent.commands")

VERBS = tuple(NodeVerb)  # named once, in the protocol
P = WorkloadPhase
# An upload carries its file in base64 (4/3 of its size) beside a small envelope.
MAX_COMMAND_PAYLOAD = MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024


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
        self.router = RequestRouter(
            topics.node_cmd_filter(node),
            {
                NodeVerb.LOGS: Action(LogsCommand, self.on_logs),
                NodeVerb.UPLOAD: Action(UploadCommand, self.on_upload),
                NodeVerb.RESTART: Action(RestartCommand, self.on_restart),
                NodeVerb.REPORT: Action(ReportCommand, self.on_report),
            },
            what="command",
            max_payload=MAX_COMMAND_PAYLOAD,
        )

    def register(self, bus: Bus) -> None:
        """Serve the four verbs on ``bus`` under ``fm/v1/nodes/{node}/cmd/+``."""
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
        """The last ``tail`` lines (since ``since``)."""
        tracked, runtime = self._workload(command, command.workload)
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
