"""Shared subscriptions (``$share/{group}/{filter}``) for the embedded broker.

amqtt 0.12 takes ``$share/...`` as a plain filter that no topic matches. Here a message that
matches the filter of a shared subscription goes to one member of the group: the clients that
subscribed to the same ``$share/{group}/{filter}``. The member is chosen by the levels of the
topic that the filter's wildcards match (its key: ``n1`` of ``fm/v1/nodes/n1/heartbeat`` under
``fm/v1/nodes/+/heartbeat``), by rendezvous hashing of the key over the members' client ids: all
messages of one key go to the same member while the group stays the same, also across the
shared subscriptions of the same members (a node's hello, state and heartbeats), and when a
member leaves only the keys it had move, each to one of the others. A registry replica so hears
all of a node's channels, in order, and judges that node's liveness alone (Mosquitto 2 and NATS
share round-robin or at random, which a replica must allow for: see ``docs/scale.md``).

Members that are connected are chosen first; with none connected, a persistent one (its QoS 1
messages queue for it, as for any offline persistent session); with neither, nobody. As in
MQTT 5, retained messages are not replayed for a shared subscription.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["SHARE_PREFIX", "pick_member", "share_key", "split_shared", "unshared"]

SHARE_PREFIX = "$share/"


def split_shared(topic_filter: str) -> tuple[str, str] | None:
    """``(group, filter)`` of ``$share/{group}/{filter}``; None for any other filter (or a
    shared one without a group or a filter)."""
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    group, _, inner = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not group or not inner or "+" in group or "#" in group:
        return None
    return group, inner


def unshared(topic_filter: str) -> str:
    """The filter topics are matched against: the inner one of a shared subscription."""
    shared = split_shared(topic_filter)
    return topic_filter if shared is None else shared[1]


def share_key(topic: str, topic_filter: str) -> str:
    """The levels of ``topic`` that the wildcards of ``topic_filter`` (which it matches) stand
    for: what a shared subscription picks its member by."""
    levels = topic.split("/")
    key: list[str] = []
    for i, level in enumerate(topic_filter.split("/")):
        if level == "#":
            key.extend(levels[i:])
            break
        if level == "+" and i < len(levels):
            key.append(levels[i])
    return "/".join(key) if key else topic


def _weight(client_id: str, key: str) -> bytes:
    return hashlib.blake2b(f"{client_id}\x00{key}".encode(), digest_size=8).digest()


def pick_member(
    key: str,
    members: Iterable[tuple[Any, int]],
    *,
    skip: Callable[[Any], bool] = lambda _session: False,
) -> list[tuple[Any, int]]:
    """The one ``(session, qos)`` of a shared subscription's members that gets a message of
    ``key`` (:func:`share_key`; an empty list when none can); ``skip(session)``: members that
    must not get it."""
    live: list[tuple[Any, int]] = []
    parked: list[tuple[Any, int]] = []
    for member in members:
        session = member[0]
        if skip(session):
            continue
        if session.transitions.state == "connected":
            live.append(member)
        elif not session.clean_session:
            parked.append(member)
    pool = live or parked
    if not pool:
        return []
    return [max(pool, key=lambda m: _weight(m[0].client_id or "", key))]
