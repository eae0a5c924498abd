"""Redeeming join tokens: the broker an agent joins through hands it its node credential.

``fogmesh node token`` retains a bootstrap account ``join-{id}`` (role ``joiner``, a hash of
the token's secret, the node it is for, an expiry). An agent holding the token connects as that
account, which may only publish ``fm/v1/join/join-{id}`` and read its own replies, and sends a
:class:`~fogmesh.protocol.accounts.JoinRequest`. The broker it is connected to (never one that
got the request over a link) makes the node a fresh password, retains the node's account record
(links carry it to every broker), retains the token's tombstone (so it cannot be used twice)
and answers with a :class:`~fogmesh.protocol.accounts.JoinReply` on the requester's reply topic.

The broker redeems rather than a service so that a node can join while its site is cut off
from the cloud, and because the broker is what must learn the credential first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

from amqtt.contexts import BaseContext
from pydantic import ValidationError

from fogmesh.broker.accounts import AccountBook
from fogmesh.broker.passwords import hash_password
from fogmesh.protocol import ErrorCode, ErrorInfo, ErrorReply, error_info_from_validation
from fogmesh.protocol.accounts import (
    JOIN_ROLE,
    AccountRecord,
    JoinReply,
    JoinRequest,
    account_topic,
)
from fogmesh.protocol.topics import ROOT

__all__ = ["JOIN_TOPIC_PREFIX", "Redeemer"]

log = logging.getLogger(__name__)
JOIN_TOPIC_PREFIX = f"{ROOT}/join/"
_BRIDGE_PREFIX = "fmb-"  # fogmesh.broker.server.BRIDGE_PREFIX (server imports the plugins' peers)
_MAX_REQUEST = 4096


class Redeemer:
    """Answers join requests that reach this broker from its own clients."""

    def __init__(self, context: BaseContext, book: AccountBook) -> None:
        """``context`` is the auth plugin's broker context; ``book`` its account book."""
        self._context = context
        self._book = book
        self._lock = asyncio.Lock()  # one redemption at a time: a token is redeemed once

    async def handle(self, client_id: str, message: Any) -> None:
        """Redeem ``message`` if it is a join request; anything else is ignored."""
        topic = getattr(message, "topic", None) or ""
        if not topic.startswith(JOIN_TOPIC_PREFIX) or client_id.startswith(_BRIDGE_PREFIX):
            return
        bootstrap = topic[len(JOIN_TOPIC_PREFIX) :]
        session = self._context.get_session(client_id)
        if session is None or session.username != bootstrap:
            log.info("join on %s from %s ignored: not that token's account", topic, client_id)
            return
        data = bytes(getattr(message, "data", b"") or b"")
        if len(data) > _MAX_REQUEST:
            log.warning("join request on %s from %s too large", topic, client_id)
            return
        own_replies = f"{ROOT}/reply/{bootstrap}/"
        try:
            request = JoinRequest.model_validate_json(data)
        except ValidationError as exc:
            log.warning("invalid join request on %s from %s", topic, client_id)
            reply_to, correlation_id = _reply_fields(data)
            if reply_to is not None and reply_to.startswith(own_replies):
                await self._answer(reply_to, ErrorReply(
                    correlation_id=correlation_id or "unknown",
                    error=error_info_from_validation(exc),
                ))  # fmt: skip
            return
        reply_to = request.reply_to
        if reply_to is None or not reply_to.startswith(own_replies):
            log.warning("join request on %s answers elsewhere (%s)", topic, reply_to)
            return
        async with self._lock:
            answer = await self._redeem(bootstrap, request)
        await self._answer(reply_to, answer)

    async def _answer(self, reply_to: str, answer: JoinReply | ErrorReply) -> None:
        await self._context.broadcast_message(reply_to, answer.model_dump_json().encode(), qos=1)

    async def _redeem(self, bootstrap: str, request: JoinRequest) -> JoinReply | ErrorReply:
        token = self._book.record(bootstrap)
        if token is None or token.role != JOIN_ROLE or not token.live():
            return _refused(request, "the join token was already used, expired or revoked")
        node = token.node or request.node
        if node is None:
            return _refused(request, "the join token names no node and the request none either")
        old = self._book.record(node)
        if old is not None and old.revoked and old.ts > token.ts:
            return _refused(request, f"node {node} was revoked after this token was issued")
        if old is not None and old.role != "node" and not old.revoked:
            return _refused(request, f"{node} is an account of role {old.role}, not a node")
        password = secrets.token_urlsafe(24)
        await self._retain(
            AccountRecord(
                username=node,
                role="node",
                node=node,
                password_hash=hash_password(password),
                source=f"join:{bootstrap}",
            )
        )
        await self._retain(AccountRecord(username=bootstrap, role=JOIN_ROLE, revoked=True))
        log.info("join token %s redeemed: node %s has its own credential", bootstrap, node)
        return JoinReply(
            correlation_id=request.correlation_id, node=node, username=node, password=password
        )

    async def _retain(self, record: AccountRecord) -> None:
        """Store ``record`` retained here and send it on to every subscriber and link."""
        broker: Any = getattr(self._context, "_broker_instance", None)
        topic = account_topic(record.username)
        data = record.model_dump_json().encode()
        await broker.retain_message(None, topic, data, 1)
        # MeshBroker's broadcast keeps the retain flag for links, so far brokers retain it too
        await broker._broadcast_message(None, topic, data, retain=True)


def _reply_fields(data: bytes) -> tuple[str | None, str | None]:
    """``reply_to`` and ``correlation_id`` of a request that failed its model, where found."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return None, None
    if not isinstance(raw, dict):
        return None, None
    reply_to, correlation_id = raw.get("reply_to"), raw.get("correlation_id")
    return (
        reply_to if isinstance(reply_to, str) and "+" not in reply_to and "#" not in reply_to
        else None,
        correlation_id if isinstance(correlation_id, str) and 0 < len(correlation_id) <= 128
        else None,
    )  # fmt: skip


def _refused(request: JoinRequest, message: str) -> ErrorReply:
    log.info("join refused: %s", message)
    return ErrorReply(
        correlation_id=request.correlation_id,
        error=ErrorInfo(code=ErrorCode.UNAUTHORISED, message=message),
    )
