"""Snapshots moved peer to peer: the source agent pushes its staged snapshot's chunks straight
to the peer agent's ``state-put`` over their site broker; the migrator only tells both ends
(``state-receive`` to the peer, ``state-send`` to the source, one random token to both) and
watches the peer's offset.

The peer takes a chunk only for a handover it was told about: the chunk must carry that
handover's token (compared in constant time), for that tenant, workload and snapshot. The
broker lets a node publish on another node's ``cmd/state-put`` and on no other of its
command topics, and never read them, so no node reads another's snapshot, and one that was
not told of a handover cannot guess its token.

The source keeps at most ``window`` chunks unanswered (each checked by the peer against its
sha256 and taken only at the offset it needs next). A refused, lost or out-of-order chunk makes
it drop the rest, ask the peer where it stands and go on from there, so a cut link resumes
where it stopped; a newer ``state-send`` of the same snapshot (the migrator's retry)
supersedes a running push.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import structlog

from fogmesh.agent.handover import Handover
from fogmesh.bus import Bus, Refusal
from fogmesh.protocol import BusError, ErrorCode, FogmeshError, RemoteError, new_id, topics
from fogmesh.protocol.commands import NodeVerb
from fogmesh.protocol.migration import (
    StatePutCommand,
    StatePutReply,
    StateReceiveCommand,
    StateSendCommand,
)

__all__ = ["EXPECT_TTL_S", "PushFailed", "Transfers"]

log = structlog.get_logger("fogmesh.agent.transfer")

EXPECT_TTL_S = 900.0
"""How long a peer waits for the chunks of a handover it was told about."""
MAX_EXPECTED = 256
"""Handovers a peer expects at once (the oldest is forgotten first)."""
PUSH_RETRIES = 5
"""Go-backs without progress before a push gives up (the migrator may send it again)."""
THROTTLE_WAITS = 50


class PushFailed(FogmeshError):
    """A push could not finish (the peer refused or stopped answering)."""


@dataclass(frozen=True, slots=True)
class _Expected:
    tenant: str
    workload: str
    snapshot: str
    from_node: str
    token: str
    until: float


class Transfers:
    """One agent's two ends of peer-to-peer snapshot transfers."""

    def __init__(self, node: str, handover: Handover) -> None:
        self.node = node
        self.handover = handover
        self._expected: OrderedDict[tuple[str, str], _Expected] = OrderedDict()
        self._received: OrderedDict[tuple[str, str], _Expected] = OrderedDict()
        """Handovers whose snapshot is all in: a late chunk or probe of theirs is told so."""
        self._pushes: dict[str, str] = {}
        """snapshot -> the id of the push that owns it now (a newer send supersedes)."""

    # -- the peer -----------------------------------------------------------------------------

    def expect(self, tenant: str, command: StateReceiveCommand) -> None:
        """Take chunks of ``command.snapshot`` that carry its token from now on."""
        key = (tenant, command.workload)
        self._expected.pop(key, None)
        self._received.pop(key, None)
        self._expected[key] = _Expected(
            tenant, command.workload, command.snapshot, command.from_node, command.token,
            time.monotonic() + EXPECT_TTL_S,
        )  # fmt: skip
        while len(self._expected) > MAX_EXPECTED:
            self._expected.popitem(last=False)

    def admit(self, tenant: str, command: StatePutCommand) -> bool:
        """Refuse a chunk (or probe) that no handover this node was told about covers; True
        when that handover's snapshot is all in already (nothing of the chunk is needed: a
        push resumed after a cut may ask where the peer stands once the last chunk is in)."""
        key = (tenant, command.workload)
        now = time.monotonic()
        for table in (self._expected, self._received):
            if (late := table.get(key)) is not None and late.until < now:
                del table[key]
        found = self._expected.get(key)
        done = found is None and (found := self._received.get(key)) is not None
        if (
            found is None
            or command.token is None
            or found.snapshot != command.snapshot
            or not secrets.compare_digest(found.token, command.token)
        ):
            log.warning("state chunk for no expected handover refused", tenant=tenant,
                        workload=command.workload, snapshot=command.snapshot)  # fmt: skip
            raise Refusal(ErrorCode.UNAUTHORISED, "no handover of this snapshot is expected here")
        return done

    def received(self, tenant: str, workload: str) -> None:
        """The snapshot is all in: its token takes no more chunks (they are answered complete)."""
        found = self._expected.pop((tenant, workload), None)
        if found is not None:
            self._received[(tenant, workload)] = found
            while len(self._received) > MAX_EXPECTED:
                self._received.popitem(last=False)

    def forget(self, tenant: str, workload: str) -> None:
        """A dropped workload's handover is expected no more."""
        self._expected.pop((tenant, workload), None)
        self._received.pop((tenant, workload), None)

    # -- the source ---------------------------------------------------------------------------

    async def push(self, bus: Bus, tenant: str, command: StateSendCommand) -> tuple[int, int]:
        """Send the staged snapshot to ``command.to``; returns (resumed_at, bytes sent).
        ``PushFailed`` when the peer refuses or stops answering, or a newer send took over."""
        me = new_id()
        self._pushes[command.snapshot] = me
        try:
            return await _Push(self, bus, tenant, command, me).run()
        finally:
            if self._pushes.get(command.snapshot) == me:
                del self._pushes[command.snapshot]

    def _superseded(self, snapshot: str, me: str) -> bool:
        return self._pushes.get(snapshot) != me


class _Push:
    """One push: a sliding window of chunks, go-back to the peer's offset on any trouble."""

    def __init__(
        self, owner: Transfers, bus: Bus, tenant: str, command: StateSendCommand, me: str
    ) -> None:
        self.owner, self.bus, self.tenant, self.command, self.me = owner, bus, tenant, command, me
        self.topic = topics.node_cmd(command.to, NodeVerb.STATE_PUT)
        self.sent = 0
        self.following = 0
        """The next offset to read and send."""
        self.inflight: deque[tuple[int, asyncio.Task[StatePutReply]]] = deque()
        self.throttled = 0

    def _put(self, offset: int, data: bytes = b"") -> StatePutCommand:
        c = self.command
        return StatePutCommand(
            tenant=self.tenant, workload=c.workload, snapshot=c.snapshot, size=c.size,
            sha256_total=c.sha256_total, offset=offset, token=c.token,
            data_b64=base64.b64encode(data).decode() if data else "",
            sha256=hashlib.sha256(data).hexdigest() if data else None,
        )  # fmt: skip

    async def _ask(self, put: StatePutCommand) -> StatePutReply:
        return await self.bus.request(
            self.topic, put, StatePutReply, timeout=self.command.chunk_timeout_s
        )

    async def _where(self) -> StatePutReply:
        """The peer's offset (an empty chunk), waiting out its throttle; what is in flight is
        dropped and sending goes on from there."""
        await _drop(self.inflight)
        for _ in range(THROTTLE_WAITS):
            try:
                answer = await self._ask(self._put(0))
            except RemoteError as exc:
                if not await _throttled(exc):
                    raise PushFailed(f"the peer refused: {exc.error.message}") from None
                continue
            except BusError as exc:
                raise PushFailed(f"the peer does not answer: {exc}") from None
            self.following = answer.next_offset
            return answer
        raise PushFailed("the peer stayed busy")

    async def _fill(self) -> None:
        """Send chunks until ``window`` are unanswered or the snapshot is all sent."""
        c = self.command
        while len(self.inflight) < c.window and self.following < c.size:
            data = await asyncio.to_thread(
                self.owner.handover.read_chunk, c.snapshot, self.following, c.chunk_bytes
            )
            if not data:
                raise PushFailed(f"the staged snapshot ends before {c.size} bytes")
            put = self._put(self.following, data)
            self.following += len(data)
            self.sent += len(data)
            self.inflight.append((self.following, asyncio.create_task(self._ask(put))))

    async def _oldest(self) -> StatePutReply | None:
        """The oldest unanswered chunk's reply if it moved the peer on to its end, else None
        (refused, lost or out of order)."""
        end, task = self.inflight.popleft()
        try:
            reply = await task
        except RemoteError as exc:
            if await _throttled(exc) and self.throttled < THROTTLE_WAITS:
                self.throttled += 1
            else:
                log.warning("chunk refused", snapshot=self.command.snapshot, end=end,
                            error=exc.error.message)  # fmt: skip
            return None
        except BusError:
            return None
        return reply if reply.complete or reply.next_offset == end else None

    async def run(self) -> tuple[int, int]:
        answer = await self._where()
        resumed_at, go_backs = answer.next_offset, 0
        try:
            while not answer.complete:
                if self.owner._superseded(self.command.snapshot, self.me):
                    raise PushFailed("a newer send of this snapshot took over")
                await self._fill()
                reply = await self._oldest() if self.inflight else None
                if reply is not None:
                    answer, go_backs = reply, 0
                    continue
                go_backs += 1
                if go_backs > PUSH_RETRIES:
                    raise PushFailed(f"no progress at {self.following} after {go_backs} tries")
                answer = await self._where()
        finally:
            await _drop(self.inflight)
        return resumed_at, self.sent


async def _throttled(exc: RemoteError) -> bool:
    """Wait out a peer's ``unavailable`` with ``retry_after_s``; False for other refusals."""
    wait = exc.error.details.get("retry_after_s")
    if exc.code is ErrorCode.UNAVAILABLE and isinstance(wait, int | float):
        await asyncio.sleep(min(float(wait), 2.0))
        return True
    return False


async def _drop(inflight: deque[tuple[int, asyncio.Task[StatePutReply]]]) -> None:
    while inflight:
        _end, task = inflight.popleft()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, BusError, RemoteError):
            await task
