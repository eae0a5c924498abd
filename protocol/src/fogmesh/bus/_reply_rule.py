"""Which reply topic a request may name, and which reply topic a requester listens on.

Replies live under ``fm/v1/reply/{account}/{client}``. A request under
``fm/v1/api/{tenant}/...`` is answered only on a reply topic of that tenant
(``fm/v1/reply/{tenant}/...``), which the broker's ACLs let only that tenant's accounts read;
any other request on a concrete topic under ``fm/v1/reply/`` or on a duty's own reply topic
``fm/v1/ops/{duty}/reply/{client}`` (a client whose bus names ``reply_duty``: its replies go only
where that duty's requests go, so WAN links need not carry them everywhere; only service accounts
use ``fm/v1/ops``). A ``reply_to`` that breaks
the rule is never published to: a request cannot make a service write into another's reply
topic, a node's desired state or a data topic.
"""

from __future__ import annotations

from functools import lru_cache

from fogmesh.protocol import ContractError, TopicRef, check_id, parse_topic, topics
from fogmesh.protocol.topics import TopicKind

__all__ = ["account_of", "reply_allowed", "reply_topic_for", "topic_ref"]


@lru_cache(maxsize=65_536)
def topic_ref(topic: str) -> TopicRef | None:
    """The parsed topic, or None for topics outside the fogmesh tree.

    Cached for every topic a registry of 10,000 nodes hears (four channels each): parsing costs
    about ten times a cache hit, and a smaller cache missed on every message of such a fleet.
    """
    try:
        return parse_topic(topic)
    except ContractError:
        return None


def reply_allowed(request_topic: str, reply_to: str) -> bool:
    """Whether a request that arrived on ``request_topic`` may be answered on ``reply_to``."""
    target = topic_ref(reply_to)
    if target is None or target.kind not in (TopicKind.REPLY, TopicKind.OPS_REPLY):
        return False
    request = topic_ref(request_topic)
    if request is not None and request.kind is TopicKind.API:
        return target.kind is TopicKind.REPLY and target.account == request.tenant
    return True


def reply_topic_for(
    request_topic: str, *, username: str | None, client_id: str, duty: str | None = None
) -> str:
    """The reply topic a client (``username``, ``client_id``) names for a request on a topic.

    A tenant's API request is answered under the tenant (``fm/v1/reply/{tenant}/{client}``), so
    an operator acting for several tenants gets each answer; anything else under the client's
    ``duty`` when it names one (``fm/v1/ops/{duty}/reply/{client}``), else under its own account
    (its username, or its client id when it has none or it is not a topic level).
    """
    request = topic_ref(request_topic)
    if request is not None and request.kind is TopicKind.API and request.tenant is not None:
        return topics.reply(request.tenant, client_id)
    if duty is not None:
        return topics.ops_reply(duty, client_id)
    return topics.reply(account_of(username, client_id), client_id)


def account_of(username: str | None, client_id: str) -> str:
    """The account a client's own topics are named by: its username when it is a topic
    level, else its client id."""
    if username:
        try:
            return check_id(username, what="account")
        except ContractError:
            pass  # a username that is no topic level (it cannot be granted one either)
    return client_id
