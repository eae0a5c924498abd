"""A staged snapshot moved peer to peer: the migrator tells the peer to expect it
(``state-receive`` with a fresh random token) and the source to push it (``state-send``, the
same token), then watches the peer's offset (an empty ``state-put``) until the source answers
that the peer has it all.

The chunks never pass through the migrator: they go from the source agent to the peer agent
over their site broker (fogmesh.agent.transfer). A push that stops making progress for
``stall_s`` (a cut link, a source that lost its connection) is sent again: the source asks the
peer where it stands and resumes there, so nothing already in is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Protocol, TypeVar

import structlog

from fogmesh.protocol import FogmeshError
from fogmesh.protocol.commands import AckReply, NodeVerb
from fogmesh.protocol.envelope import Reply, Request
from fogmesh.protocol.migration import (
    FrozenReply,
    StatePutCommand,
    StatePutReply,
    StateReceiveCommand,
    StateSendCommand,
    StateSendReply,
)

__all__ = ["SEND_TRIES", "Asker", "TransferFailed", "hand_over"]

log = structlog.get_logger("fogmesh.migrator")
R = TypeVar("R", bound=Reply)

SEND_TRIES = 4
"""How often one transfer's push is sent (the first and its resumptions)."""


class TransferFailed(FogmeshError):
    """The snapshot did not reach the peer; the message says why."""


class Asker(Protocol):
    """Sends a command to one node's agent for a tenant (the mover); a refusal or no answer
    raises."""

    async def ask(
        self, tenant: str, node: str, verb: NodeVerb, request: Request, model: type[R],
        *, timeout: float | None = None,
    ) -> R: ...  # fmt: skip


async def hand_over(
    asker: Asker,
    tenant: str,
    *,
    workload: str,
    source: str,
    peer: str,
    frozen: FrozenReply,
    chunk_bytes: int,
    stall_s: float,
) -> int:
    """Move ``frozen`` from ``source`` to ``peer``, resuming a stalled push; returns the chunk
    bytes the source sent. Raises ``TransferFailed`` (or the ask's error for the setup)."""
    token = secrets.token_hex(16)

    async def ask(node: str, verb: NodeVerb, request: Request, model: type[R], wait: float) -> R:
        return await asker.ask(tenant, node, verb, request, model, timeout=wait)

    expect = StateReceiveCommand(
        workload=workload, snapshot=frozen.snapshot, size=frozen.size,
        sha256_total=frozen.sha256, from_node=source, token=token,
    )  # fmt: skip
    await ask(peer, NodeVerb.STATE_RECEIVE, expect, AckReply, stall_s)
    send = StateSendCommand(
        workload=workload, snapshot=frozen.snapshot, size=frozen.size,
        sha256_total=frozen.sha256, to=peer, token=token, chunk_bytes=chunk_bytes,
        chunk_timeout_s=stall_s,
    )  # fmt: skip
    probe = StatePutCommand(
        workload=workload, snapshot=frozen.snapshot, size=frozen.size,
        sha256_total=frozen.sha256, offset=0, token=token,
    )  # fmt: skip
    why = "no push was sent"
    for attempt in range(SEND_TRIES):
        # the push's own deadline is long: progress, not its end, decides when to resume
        push = asyncio.ensure_future(
            ask(source, NodeVerb.STATE_SEND, send, StateSendReply, stall_s * 100)
        )
        try:
            seen, stalled = -1, 0.0
            while True:
                done, _ = await asyncio.wait({push}, timeout=stall_s / 4)
                if done:
                    try:
                        reply = push.result()
                    except FogmeshError as exc:  # the push failed: resume below
                        why = str(exc)
                        break
                    return reply.sent_bytes
                try:
                    at = await ask(peer, NodeVerb.STATE_PUT, probe, StatePutReply, stall_s)
                    offset = at.next_offset
                except FogmeshError as exc:  # a cut link: no progress seen
                    why, offset = str(exc), seen
                stalled = 0.0 if offset > seen else stalled + stall_s / 4
                seen = max(seen, offset)
                if stalled >= stall_s:
                    why = f"no progress at {seen} for {stall_s:g}s"
                    break
        finally:
            push.cancel()
            with contextlib.suppress(asyncio.CancelledError, FogmeshError):
                await push
        log.info("state push resumed", workload=workload, source=source, peer=peer,
                 attempt=attempt + 1, reason=why)  # fmt: skip
    raise TransferFailed(f"the state did not reach {peer}: {why}")
