"""One request router: a set of actions served under one topic filter.

A service declares its actions (name -> request model and handler) and the router does the
rest, the same way for every service:

* one subscription for the whole filter (a broker may deliver a message once per matching
  subscription, so a filter per action plus a catch-all would answer twice);
* an optional guard (a standby scheduler stays silent: nothing is answered while it is false);
* the action is the topic's last level (``action`` of an API topic, ``verb`` of a node
  command); an unknown one is answered ``invalid_request`` naming the known actions;
* a payload over the bus's size limit is refused unparsed; one nested too deep for the parser
  or failing the model is answered ``invalid_payload`` naming the fields; each is validated once;
* a request whose ``(id, correlation_id)`` was seen on the same topic lately is a replay: it is
  not handled again and gets no second answer, only a log line (the first answer went to the
  same ``reply_to``);
* each tenant has a token bucket: a request over it is answered ``unavailable`` with
  ``retry_after_s`` at once, without parsing its body, and the answer is sent in the background,
  so one tenant's flood costs another tenant's requests only the time to refuse it;
* ``Refusal`` becomes its code; any other exception ``internal`` without its text (see
  :mod:`fogmesh.bus._subscription`);
* every request it receives (a standby's excepted) is audited: an
  :class:`~fogmesh.protocol.audit.AuditRecord` of who (the topic's tenant or node, the
  request's claimed tenant and source), what (topic, action, target) and the outcome (``ok``,
  the error code answered, or ``replayed``) is published in the background on
  ``fm/v1/audit/{account}``, this service's account (only operators read it). A payload the
  bus refuses for its size never reaches the router and is logged there instead;
* an action marked ``background`` (a relay that waits on another service) is handled off the
  subscription's worker, so the message is acknowledged at once and a slow answer holds up
  nobody's other requests (a broker stops delivering to a client that holds too many messages
  unacknowledged, which would keep that very answer away): at most ``max_background`` such
  requests run at once, ``max_background_per_tenant`` of one tenant, beyond that ``unavailable``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import structlog
from pydantic import ValidationError

from fogmesh.bus._context import MessageContext, RawMessage, run_handler
from fogmesh.bus._limits import RecentIds, TokenBuckets
from fogmesh.bus._replies import invalid_payload_reply, refusal_reply
from fogmesh.bus._reply_rule import account_of
from fogmesh.protocol import ContractError, ErrorCode, ErrorInfo, Request, topics
from fogmesh.protocol.topics import TopicKind, TopicRef

if TYPE_CHECKING:
    from fogmesh.bus._client import Bus

__all__ = ["Action", "RequestRouter"]

log = structlog.get_logger("fogmesh.bus")

Q = TypeVar("Q", bound=Request)
OPERATOR = "(operator)"
"""The throttle key of requests that name no tenant (an operator's node commands)."""
_TARGETS = ("workload", "app", "node", "snapshot")
"""Request fields that name what a request acts on, in the order an audit record takes one."""


@dataclass(frozen=True, slots=True)
class Action(Generic[Q]):
    """One action a router serves: the model its requests validate as, and its handler.

    ``model`` is the request model, or a function of no arguments that returns it: a service
    whose verbs are rare (the agent's migration verbs) so imports their contract module at the
    action's first request, not at start.
    """

    model: type[Q] | Callable[[], type[Q]]
    handler: Callable[[Q, MessageContext], Awaitable[None]]
    background: bool = False
    """Handle off the subscription's worker (the handler waits on other services)."""

    def request_model(self) -> type[Q]:
        """The model requests validate as (``model`` called, when it is a function)."""
        model = self.model
        return model if isinstance(model, type) else model()


class RequestRouter:
    """Serves ``actions`` under ``topic_filter``; see the module docstring for the rules.

    ``what`` names the actions in messages ("apps action"). ``rate_per_s`` and ``burst`` are
    each tenant's token bucket; ``recent_ids`` how many requests are remembered for replays;
    ``max_payload`` overrides the bus's size limit for this filter (bytes);
    ``max_background`` and ``max_background_per_tenant`` bound the ``background`` actions.
    """

    def __init__(
        self,
        topic_filter: str,
        actions: Mapping[str, Action[Any]],
        *,
        what: str = "action",
        guard: Callable[[], bool] | None = None,
        rate_per_s: float = 100.0,
        burst: float = 200.0,
        recent_ids: int = 4096,
        max_payload: int | None = None,
        max_background: int = 64,
        max_background_per_tenant: int = 16,
    ) -> None:
        self.filter = topic_filter
        self.actions = dict(actions)
        self.what = what
        self.guard = guard
        self.throttle = TokenBuckets(rate_per_s, burst)
        self.recent = RecentIds(recent_ids)
        self.max_payload = max_payload
        self.max_background = max_background
        self.max_background_per_tenant = max_background_per_tenant
        self._running: dict[str, int] = {}
        """Background requests in flight, per tenant."""

    def attach(self, bus: Bus) -> None:
        """Subscribe the filter on ``bus`` (once; attaching again replaces the handler)."""
        bus.subscribe(self.filter, RawMessage, self._on_message, max_payload=self.max_payload)

    async def _on_message(self, raw: RawMessage, ctx: MessageContext) -> None:
        if self.guard is not None and not self.guard():
            return  # e.g. a standby: the leader answers
        ref = ctx.ref
        name = _action_of(ref)
        action = self.actions.get(name or "")
        if action is None:
            await self._refuse(raw, ctx, self._unknown(name))
            self._audit(ctx, raw, name, None, ErrorCode.INVALID_REQUEST.value)
            return
        if ref is not None and ref.kind is TopicKind.API and not self._admit(ref.tenant, raw, ctx):
            self._audit(ctx, raw, name, None, ErrorCode.UNAVAILABLE.value)
            return  # an API request's tenant is its topic's: refused before parsing
        try:
            request = action.request_model().model_validate_json(raw.payload)
        except ValidationError as exc:
            answer = invalid_payload_reply(
                raw.payload, exc, source=ctx.bus.config.client_id, topic=ctx.topic
            )
            if answer is not None:
                await ctx.bus.publish(*answer, qos=1)
            self._audit(ctx, raw, name, None, ErrorCode.INVALID_PAYLOAD.value)
            return
        if (ref is None or ref.kind is not TopicKind.API) and not self._admit(
            request.tenant or OPERATOR, raw, ctx, request
        ):
            self._audit(ctx, raw, name, request, ErrorCode.UNAVAILABLE.value)
            return
        if self.recent.seen_before((ctx.topic, request.id, request.correlation_id)):
            log.warning("replayed request not handled again", request_id=request.id)
            self._audit(ctx, raw, name, request, "replayed")
            return
        if action.background:
            await self._in_background(action, request, raw, ctx.with_message(request), name)
            return
        outcome = await run_handler(action.handler, request, ctx.with_message(request))
        self._audit(ctx, raw, name, request, outcome)

    async def _in_background(
        self,
        action: Action[Any],
        request: Request,
        raw: RawMessage,
        ctx: MessageContext,
        name: str | None,
    ) -> None:
        tenant = (ctx.ref.tenant if ctx.ref is not None else None) or request.tenant or OPERATOR
        mine = self._running.get(tenant, 0)
        if mine >= self.max_background_per_tenant or sum(self._running.values()) >= (
            self.max_background
        ):
            info = ErrorInfo(
                code=ErrorCode.UNAVAILABLE,
                message=f"too many requests of {tenant} in progress; retry later",
                details={"retry_after_s": 5.0},
            )
            await ctx.reply_error(info)
            self._audit(ctx, raw, name, request, ErrorCode.UNAVAILABLE.value)
            return
        self._running[tenant] = mine + 1

        async def work() -> None:
            try:
                outcome = await run_handler(action.handler, request, ctx)
                self._audit(ctx, raw, name, request, outcome)
            finally:
                self._release(tenant)

        if not ctx.bus._spawn(work(), name="request"):  # the bus's own TaskGroup
            self._release(tenant)
            await ctx.reply_error(
                ErrorInfo(code=ErrorCode.UNAVAILABLE, message="the service is busy; retry later")
            )
            self._audit(ctx, raw, name, request, ErrorCode.UNAVAILABLE.value)

    def _release(self, tenant: str) -> None:
        left = self._running.get(tenant, 1) - 1
        if left > 0:
            self._running[tenant] = left
        else:
            self._running.pop(tenant, None)

    def _audit(
        self,
        ctx: MessageContext,
        raw: RawMessage,
        action: str | None,
        request: Request | None,
        outcome: str,
    ) -> None:
        """Publish the audit record of one request in the background (never waited on)."""
        # its module is loaded by the first request (a node agent may never be asked anything)
        from fogmesh.protocol.audit import AuditRecord

        bus = ctx.bus
        ref = ctx.ref
        target = None
        if request is not None:
            for field in _TARGETS:
                value = getattr(request, field, None)
                if isinstance(value, str):
                    target = f"{field}:{value}"[:256]
                    break
        record = AuditRecord(
            service=bus.config.client_id[:256],
            topic=ctx.topic[:1024],
            action=None if action is None else action[:256],
            tenant=ref.tenant if ref is not None else None,
            node=ref.node if ref is not None else None,
            claimed_tenant=request.tenant if request is not None else None,
            source=request.source if request is not None else "",
            request_id=request.id if request is not None else None,
            correlation_id=request.correlation_id if request is not None else None,
            target=target,
            outcome=outcome,
            size=len(raw.payload),
        )
        try:
            topic = topics.audit(account_of(bus.config.username, bus.config.client_id))
        except ContractError:  # a client id that is no topic level: nowhere to audit to
            log.info("request not audited", record=record.model_dump())
            return
        bus.publish_later(topic, record)

    def _unknown(self, name: str | None) -> ErrorInfo:
        known = list(self.actions)
        return ErrorInfo(
            code=ErrorCode.INVALID_REQUEST,
            message=f"unknown {self.what} {name!r}; known actions: {', '.join(known)}",
            details={"action": name, "known": known},
        )

    def _admit(
        self,
        tenant: str | None,
        raw: RawMessage,
        ctx: MessageContext,
        request: Request | None = None,
    ) -> bool:
        wait = self.throttle.take(tenant or OPERATOR)
        if not wait:
            return True
        retry = round(wait, 3)
        log.info("request throttled", tenant=tenant, retry_after_s=retry)
        info = ErrorInfo(
            code=ErrorCode.UNAVAILABLE,
            message=f"too many requests from {tenant or 'the operator'}; retry in {retry} s",
            details={"retry_after_s": retry},
        )
        where = (request.reply_to, request.correlation_id) if request is not None else None
        answer = refusal_reply(
            raw.payload, info, source=ctx.bus.config.client_id, topic=ctx.topic, where=where
        )
        if answer is not None:
            ctx.bus.publish_later(*answer)  # never wait on a flooder in the shared worker
        return False

    @staticmethod
    async def _refuse(raw: RawMessage, ctx: MessageContext, info: ErrorInfo) -> None:
        log.info("request refused", code=info.code.value, reason=info.message)
        answer = refusal_reply(raw.payload, info, source=ctx.bus.config.client_id, topic=ctx.topic)
        if answer is not None:
            await ctx.bus.publish(*answer, qos=1)


def _action_of(ref: TopicRef | None) -> str | None:
    if ref is None:
        return None
    return ref.action if ref.kind is TopicKind.API else ref.verb
