"""A tenant's workload commands (``workloads/{action}`` but ``list``), relayed to agents.

The registry knows from each node's ``actual`` where a tenant's workload runs. It sends the
request on as the agent's command (``fm/v1/nodes/{node}/cmd/{verb}``) over its own service
account, with the topic's tenant set, waits a bounded time for the answer and hands it to the
requester under the request's correlation id. So a tenant needs no access to ``nodes/``
topics, and no tenant can reach another's workload: the lookup is by the topic's tenant, and a
workload that tenant does not run (another tenant's included) is ``not_found`` with the same
words as an absent one; an agent's ``unauthorised`` (a stale registry row) is ``not_found``
too. A node that does not answer in time is ``unavailable``.

Each relay is handled in the background (``Action.background``): the registry's subscription
is never held while a node answers. A ``logs`` follow (``follow_s``) is a stream, so it is not
waited on: the registry forwards it with the requester's own ``reply_to`` (checked by the
reply rule first) and correlation id, and the agent streams its replies there.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from sqlalchemy import Engine

from fogmesh.bus import Action, MessageContext, Refusal, reply_allowed
from fogmesh.protocol import (
    MAX_PAGE,
    ErrorCode,
    ListWorkloads,
    LogsCommand,
    RemoteError,
    Reply,
    Request,
    RequestTimeout,
    WorkloadPhase,
    new_id,
    topics,
)
from fogmesh.protocol.commands import MAX_UPLOAD_BYTES, NodeVerb
from fogmesh.protocol.queries import WorkloadInfo
from fogmesh.protocol.workload_api import (
    FILE_RELAY_TIMEOUT_S,
    RELAY_TIMEOUT_S,
    WORKLOAD_ACTIONS,
    WorkloadAction,
)
from fogmesh.registry.db import reads

__all__ = ["RELAY_MAX_PAYLOAD", "WorkloadRelay", "topic_tenant"]

log = structlog.get_logger("fogmesh.registry.relay")

_FILE_VERBS = frozenset({NodeVerb.UPLOAD, NodeVerb.DOWNLOAD})
RELAY_MAX_PAYLOAD = MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024
"""The largest ``workloads/*`` request (an upload's file in base64 beside its envelope)."""


class WorkloadRelay:
    """Relays the workload actions of :data:`WORKLOAD_ACTIONS` to the agents."""

    def __init__(
        self,
        engine: Engine,
        *,
        timeout: float = RELAY_TIMEOUT_S,
        file_timeout: float = FILE_RELAY_TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self.timeout = timeout
        self.file_timeout = file_timeout

    def actions(self) -> dict[str, Action[Any]]:
        """The router's actions: one per relayed workload action."""
        return {
            action.value: Action(model, self._handler(action, verb, answer), background=True)
            for action, (verb, model, answer) in WORKLOAD_ACTIONS.items()
        }

    def _handler(self, action: WorkloadAction, verb: NodeVerb, answer: type[Reply]) -> Any:
        async def handle(msg: Request, ctx: MessageContext) -> None:
            await self.relay(msg, ctx, verb, answer)

        handle.__doc__ = f"``workloads/{action.value}``: relayed to ``cmd/{verb.value}``."
        return handle

    async def relay(
        self, msg: Request, ctx: MessageContext, verb: NodeVerb, answer: type[Reply]
    ) -> None:
        """Find the node that runs the topic's tenant's workload and pass the request on."""
        tenant = topic_tenant(msg, ctx)
        workload = str(getattr(msg, "workload", ""))
        node = await self.node_of(tenant, workload)
        if node is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no workload {workload!r} for tenant {tenant!r}")
        topic = topics.node_cmd(node, verb)
        if isinstance(msg, LogsCommand) and msg.follow_s > 0:
            await self._forward(msg, ctx, topic, tenant)
            return
        command = msg.model_copy(
            update={"tenant": tenant, "id": new_id(), "correlation_id": new_id(), "source": ""}
        )
        timeout = self.file_timeout if verb in _FILE_VERBS else self.timeout
        try:
            reply = await ctx.bus.request(topic, command, answer, timeout=timeout)
        except RequestTimeout as exc:
            raise Refusal(
                ErrorCode.UNAVAILABLE,
                f"node {node!r} did not answer within {timeout:g} s",
                details={"retry_after_s": 5.0},
            ) from exc
        except RemoteError as exc:
            code = ErrorCode.NOT_FOUND if exc.code is ErrorCode.UNAUTHORISED else exc.code
            if code is ErrorCode.NOT_FOUND:
                raise Refusal(code, f"no workload {workload!r} for tenant {tenant!r}") from exc
            raise Refusal(code, exc.error.message, details=exc.error.details) from exc
        await ctx.reply(
            reply.model_copy(
                update={
                    "id": new_id(),
                    "correlation_id": msg.correlation_id,
                    "tenant": tenant,
                    "source": ctx.bus.config.client_id,
                }
            )
        )

    async def _forward(
        self, msg: LogsCommand, ctx: MessageContext, topic: str, tenant: str
    ) -> None:
        if msg.reply_to is None or not reply_allowed(ctx.topic, msg.reply_to):
            raise Refusal(
                ErrorCode.INVALID_REQUEST, "a follow needs a reply_to of the tenant's own"
            )
        command = msg.model_copy(update={"tenant": tenant, "id": new_id(), "source": ""})
        await ctx.bus.publish(topic, command, qos=1)
        log.info("log follow forwarded", tenant=tenant, workload=msg.workload, topic=topic)

    async def node_of(self, tenant: str, workload: str) -> str | None:
        """The node that runs ``tenant``'s ``workload`` (a running one first), or None."""
        found: list[WorkloadInfo] = []
        cursor: str | None = None
        while True:
            query = ListWorkloads(limit=MAX_PAGE, cursor=cursor)
            page, cursor = await asyncio.to_thread(reads.list_workloads, self.engine, tenant, query)
            found += [w for w in page if w.name == workload and w.tenant == tenant]
            if cursor is None:
                break
        live = [w for w in found if w.phase is not WorkloadPhase.REMOVED]
        if not live:
            return None
        live.sort(key=lambda w: (w.phase is not WorkloadPhase.RUNNING, -w.updated_at))
        return live[0].node


def topic_tenant(msg: Request, ctx: MessageContext) -> str:
    """The tenant of the topic; a request that claims another is refused ``unauthorised``."""
    tenant = ctx.ref.tenant if ctx.ref is not None else None
    if tenant is None:
        raise Refusal(ErrorCode.INVALID_REQUEST, "not an api topic")
    if msg.tenant is not None and msg.tenant != tenant:
        raise Refusal(ErrorCode.UNAUTHORISED, f"request for tenant {msg.tenant!r} on {tenant!r}")
    return tenant
