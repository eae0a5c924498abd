"""Leases: who holds a single-writer duty (the scheduler's placements) until when."""

from __future__ import annotations

from pydantic import Field

from fogmesh.protocol._ids import Ident
from fogmesh.protocol.envelope import Envelope

__all__ = ["LeaseRecord"]


class LeaseRecord(Envelope):
    """``leases/{duty}`` (retained): ``holder`` owns ``duty`` until ``expires_at``.

    ``term`` grows by one each time the duty changes hands, so a writer can stamp what it writes
    and a reader can ignore a deposed writer's late messages.
    """

    duty: Ident
    holder: str = Field(min_length=1, max_length=256)
    term: int = Field(ge=0)
    expires_at: float
