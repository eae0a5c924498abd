"""A single-writer lease on ``fm/v1/leases/{duty}`` (the scheduler's, the migrator's; see
docs/scheduler.md).

Every instance of the service subscribes to the retained :class:`LeaseRecord`. The holder
renews it every ``ttl / 3`` seconds (same ``term``, later ``expires_at``). Another instance is
a standby: when the record is missing or has expired it claims the duty with ``term + 1``,
waits ``settle`` seconds and is leader only if the record the broker delivered last is its own
(the broker delivers competing claims to every subscriber in one order, so all agree on the
winner). A leader that sees another holder's record steps down at once.

The record concerns only the broker the duty's instances share (the cloud's for ``scheduler``
and ``migrator``, a site's for ``migrator-{site}``): renewed every few seconds, it crosses no
WAN link of ``fogmesh up`` (``fogmesh.cli.fleet.plan.link_rules``), so every instance of one
duty must use the same broker (or broker cluster).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from fogmesh.bus import Bus, MessageContext
from fogmesh.protocol import NotConnectedError, topics
from fogmesh.protocol.lease import LeaseRecord

__all__ = ["LeaseKeeper"]

log = structlog.get_logger("fogmesh.service.lease")


class LeaseKeeper:
    """Holds or waits for the lease of one duty (``scheduler``, ``migrator``)."""

    def __init__(
        self,
        bus: Bus,
        holder: str,
        *,
        duty: str = "scheduler",
        ttl: float = 10.0,
        settle: float = 0.5,
        on_gain: Callable[[int], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.duty = duty
        self.holder = holder
        self.ttl = ttl
        self.settle = settle
        self.on_gain = on_gain
        self.clock = clock
        self.current: LeaseRecord | None = None
        self.seen = asyncio.Event()
        self._leader = False
        self.topic = topics.lease(duty)

    def install(self) -> None:
        """Subscribe to the lease record."""
        self.bus.subscribe(self.topic, LeaseRecord, self._on_record)

    async def _on_record(self, record: LeaseRecord, ctx: MessageContext) -> None:
        self.current = record
        self.seen.set()
        if self._leader and record.holder != self.holder:
            log.warning(
                "lease taken by another instance; stepping down",
                duty=self.duty,
                holder=record.holder,
            )
            self._leader = False

    @property
    def leader(self) -> bool:
        """Whether this instance holds an unexpired lease."""
        rec = self.current
        return (
            self._leader
            and rec is not None
            and rec.holder == self.holder
            and rec.expires_at > self.clock()
        )

    @property
    def term(self) -> int:
        """The current term (0 before any)."""
        return self.current.term if self.current else 0

    async def _publish(self, term: int) -> None:
        record = LeaseRecord(
            duty=self.duty,
            holder=self.holder,
            term=term,
            expires_at=self.clock() + self.ttl,
            source=self.holder,
        )
        # Never queued: a record written while away could depose the leader elected meanwhile.
        await self.bus.publish(self.topic, record, qos=1, retain=True, queue=False)

    async def run(self, initial_wait: float = 1.0) -> None:
        """Loop forever: wait for the retained record, then claim or renew."""
        await self.bus.wait_connected()
        # A retained record arrives right after subscribing; give it a moment.
        try:
            async with asyncio.timeout(initial_wait):
                await self.seen.wait()
        except TimeoutError:
            pass
        while True:
            try:
                await self.step()
            except NotConnectedError:
                # Cannot renew: ``leader`` lapses by itself when the record expires.
                log.info("lease not written: the bus is not connected")
            await asyncio.sleep(self.ttl / 3)

    async def step(self) -> None:
        """One round: renew if leader, claim if the lease is free, else wait."""
        rec = self.current
        if self._leader and rec is not None and rec.holder == self.holder:
            await self._publish(rec.term)
            return
        if rec is not None and rec.holder != self.holder and rec.expires_at > self.clock():
            return
        term = (rec.term + 1) if rec is not None and rec.holder != self.holder else self.term
        term = max(term, 1)
        await self._publish(term)
        deadline = self.clock() + max(self.settle, 0.05) + 5.0
        await asyncio.sleep(self.settle)
        while self.clock() < deadline:
            mine = self.current
            if mine is not None and mine.holder == self.holder and mine.term == term:
                break
            if mine is not None and mine.holder != self.holder and mine.expires_at > self.clock():
                return
            await asyncio.sleep(0.05)
        else:
            return
        log.info("lease gained", duty=self.duty, term=term)
        self._leader = True
        if self.on_gain is not None:
            await self.on_gain(term)
