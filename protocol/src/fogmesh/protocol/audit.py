"""Audit records: who asked what of a service and how it ended, on ``fm/v1/audit/{account}``.

Every request a :class:`fogmesh.bus.RequestRouter` receives is recorded once by the service
that received it, on the audit topic of that service's broker account. Only operators
(``service`` role) read ``fm/v1/audit/#``; tenants and nodes may not subscribe to it.
"""

from __future__ import annotations

import time

from pydantic import ConfigDict, Field

from fogmesh.protocol._model import Model

__all__ = ["AuditRecord"]


class AuditRecord(Model):
    """One request and its outcome.

    ``account`` and ``tenant`` are the topic's (an API topic's tenant is bound to the
    credential by the broker's ACLs); ``claimed_tenant`` and ``source`` are what the request
    said of itself. ``outcome`` is ``ok`` or the error code it was answered with
    (``replayed`` for a replay answered no more, ``unanswered`` when nothing was sent).
    """

    model_config = ConfigDict(extra="forbid")

    ts: float = Field(default_factory=time.time)
    service: str = Field(max_length=256, description="the bus client that received it")
    topic: str = Field(max_length=1024)
    action: str | None = Field(default=None, max_length=256)
    tenant: str | None = Field(default=None, max_length=256)
    node: str | None = Field(default=None, max_length=256)
    claimed_tenant: str | None = Field(default=None, max_length=256)
    source: str = Field(default="", max_length=256)
    request_id: str | None = Field(default=None, max_length=128)
    correlation_id: str | None = Field(default=None, max_length=128)
    target: str | None = Field(default=None, max_length=256, description="e.g. the workload")
    outcome: str = Field(max_length=64)
    size: int = Field(default=0, ge=0, description="the request's payload in bytes")
