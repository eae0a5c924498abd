"""Broker mesh status: each bridge link reports its state, retained, on
``mesh/{broker}/links/{link}``; and the brokers' own messages that let a persistent session
follow its client across the mesh (``mesh/sessions/claim``, ``mesh/sessions/handoff/{broker}``)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from fogmesh.protocol._ids import Ident
from fogmesh.protocol._model import Model
from fogmesh.protocol.envelope import Envelope

__all__ = ["HandedOnMessage", "LinkState", "LinkStatus", "SessionClaim"]


class LinkState(StrEnum):
    """Whether a bridge link is carrying messages."""

    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


class LinkStatus(Envelope):
    """One bridge link's state and queue."""

    broker: Ident
    link: Ident
    state: LinkState
    queue_depth: int = Field(ge=0, description="messages waiting on disk to cross")
    queued_to_remote: int = Field(default=0, ge=0, description="of those, local to remote")
    queued_to_local: int = Field(default=0, ge=0, description="of those, remote to local")
    backlog: int = Field(
        default=0, ge=0, description="messages of a backlog still draining at the link's rate"
    )
    coalesced: int = Field(
        default=0, ge=0, description="backlog messages not sent: a newer one of the topic was"
    )
    dropped: int = Field(ge=0, description="messages dropped by the queue's bound since start")
    forwarded: int = Field(default=0, ge=0)
    ignored: int = Field(default=0, ge=0, description="messages received that no rule carries")
    last_error: str = Field(default="", max_length=1024)
    path: str = Field(default="", description="the path the remote side uses now ('': none)")
    path_bytes: dict[str, int] = Field(
        default_factory=dict, description="bytes each path carried this month (UTC), both ways"
    )
    since: float | None = Field(
        default=None, description="unix time the link entered this state (None: unknown)"
    )
    wire_bytes_out: int = Field(
        default=0,
        ge=0,
        description="bytes the link wrote to the remote broker's sockets since it started"
        " (MQTT packets whole, every path and probe; inside TLS)",
    )
    wire_bytes_in: int = Field(
        default=0, ge=0, description="bytes the link read from the remote broker's sockets"
    )
    local_wire_bytes_out: int = Field(
        default=0, ge=0, description="bytes the link wrote to the local broker's socket"
    )
    local_wire_bytes_in: int = Field(
        default=0, ge=0, description="bytes the link read from the local broker's socket"
    )
    path_wire_bytes_out: dict[str, int] = Field(
        default_factory=dict, description="wire_bytes_out per path (links with paths only)"
    )
    path_wire_bytes_in: dict[str, int] = Field(
        default_factory=dict, description="wire_bytes_in per path (links with paths only)"
    )


class SessionClaim(Model):
    """A broker says: ``client_id`` (of ``username``) subscribed ``filters`` here, with a
    persistent session; a broker holding that client's disconnected session hands on what it
    holds for those filters (``fogmesh.broker.handoff``)."""

    broker: str
    client_id: str
    username: str | None
    filters: list[str]


class HandedOnMessage(Model):
    """One message an old broker held for ``client_id``, handed on to the claiming broker in
    order (QoS 1, journalled before the old copy goes); ``data`` is base64."""

    client_id: str
    username: str | None
    topic: str
    qos: int
    data: str
