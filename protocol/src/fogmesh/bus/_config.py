"""Settings of one bus connection, and the last will it leaves with the broker."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel

from fogmesh.protocol import check_id, check_topic

__all__ = ["BusConfig", "OutboxPolicy", "Will"]


class OutboxPolicy(StrEnum):
    """What :meth:`Bus.publish` does when disconnected and the outbox is full."""

    DROP_OLDEST = "drop-oldest"  # drop the oldest non-retained message, count it in ``dropped``
    REJECT = "reject"  # raise NotConnectedError; the caller keeps the message


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Where and how a :class:`Bus` connects.

    ``clean_session`` is False by default: the broker keeps the session, so QoS 1 messages
    published while this client was away are delivered when it returns. ``client_id`` must be
    stable across restarts for that to work, and must be a legal topic level because replies to
    this client arrive on ``fm/v1/reply/{account}/{client_id}``.

    ``max_payload`` (bytes) bounds what any handler is given: a bigger message is never parsed,
    it is logged and answered ``invalid_payload`` where its ``reply_to`` can be found by a
    bounded scan. A subscription may set its own limit (an agent's file uploads).

    ``reply_duty`` names the duty a service serves (a site cache's ``cache-{site}``): replies to
    its requests outside a tenant's API then come on ``fm/v1/ops/{duty}/reply/{client_id}``,
    which WAN links carry only where that duty's requests go, instead of
    ``fm/v1/reply/{account}/{client_id}``, which they carry everywhere (docs/artefacts.md).

    ``failover`` lists further ``(host, port)`` members of a clustered broker: each reconnect
    after a lost or failed connection tries the next address in turn, starting from ``host``.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "fogmesh"
    username: str | None = None
    password: str | None = None
    clean_session: bool = False
    keepalive: int = 10
    tls: ssl.SSLContext | None = None
    transport: str = "tcp"
    websocket_path: str | None = None
    timeout: float = 10.0
    outbox_limit: int = 10_000
    outbox_policy: OutboxPolicy = OutboxPolicy.DROP_OLDEST
    reconnect_base: float = 0.2
    reconnect_cap: float = 30.0
    max_payload: int = 256 * 1024
    extra: dict[str, str] = field(default_factory=dict)
    failover: tuple[tuple[str, int], ...] = ()
    reply_duty: str | None = None

    def endpoint(self, turn: int) -> tuple[str, int]:
        """The address to dial on reconnect number ``turn``: ``host`` and then each failover."""
        members = [(self.host, self.port), *self.failover]
        return members[turn % len(members)]

    def __post_init__(self) -> None:
        check_id(self.client_id, what="client_id")
        if self.reply_duty is not None:
            check_id(self.reply_duty, what="reply_duty")
        if self.outbox_limit < 1:
            raise ValueError("outbox_limit must be at least 1")
        if self.max_payload < 1:
            raise ValueError("max_payload must be at least 1 byte")
        if not 0 < self.reconnect_base <= self.reconnect_cap:
            raise ValueError("need 0 < reconnect_base <= reconnect_cap")


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for this client if its session dies uncleanly."""

    topic: str
    message: BaseModel
    qos: int = 1
    retain: bool = True

    def __post_init__(self) -> None:
        check_topic(self.topic)
