"""The single database writer: a queue drained every ``interval`` seconds (or sooner when it
holds ``max_items``) into one transaction, run in a worker thread so the event loop never
blocks on the database. Operations are coalesced per node as they are queued
(:class:`~fogmesh.registry.ops.Batch`), so a burst costs rows, not statements."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from fogmesh.registry.ops import Batch, HeartbeatOp, LostClaim, Op

__all__ = ["WriteQueue", "WriterStats"]

log = structlog.get_logger("fogmesh.registry.writer")


@dataclass(slots=True)
class WriterStats:
    """Counters of the writer, for logs, tests and the bench."""

    batches: int = 0
    ops: int = 0
    heartbeats: int = 0
    coalesced: int = 0
    """Operations a later one of the same node absorbed before they were written."""
    failures: int = 0
    dropped_batches: int = 0


class WriteQueue:
    """Collects write operations and applies them in batches with ``apply(batch)``."""

    def __init__(
        self,
        apply: Callable[[Batch], None],
        *,
        interval: float = 0.15,
        max_items: int = 2000,
        retries: int = 3,
    ) -> None:
        self._apply = apply
        self.interval = interval
        self.max_items = max_items
        self.retries = retries
        self._batch = Batch()
        self._has_items = asyncio.Event()
        self._full = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stats = WriterStats()
        self.lost: Callable[[str, LostClaim], None] | None = None
        """Told, in the place of a claim's callbacks, each claim a committed batch lost: the
        node and what the batch found and recorded instead (``Batch.lost``)."""
        self.dropped: Callable[[Batch], None] | None = None
        """Told each batch given up after its retries (its claims are neither won nor lost)."""

    def put(self, op: Op | HeartbeatOp) -> None:
        """Queue one operation; a later one of the same node and kind absorbs it."""
        before = self._batch.coalesced
        self._batch.add(op)
        self.stats.coalesced += self._batch.coalesced - before
        self._note()

    def heartbeat(self, op: HeartbeatOp) -> None:
        """Queue a heartbeat; a newer one of the same node replaces it."""
        self.put(op)

    def after_commit(self, callback: Callable[[], None], *, claim: str | None = None) -> None:
        """Call ``callback()`` once the operations queued so far are committed (e.g. hand the
        event of a change to the publisher only when a query can already see the change);
        with ``claim`` (a node), only if that commit created the node's row (``EventOp``;
        otherwise :attr:`lost` is told).

        Callbacks must not block: the writer calls them between transactions."""
        self._batch.after_commit.append((callback, claim))
        self._note()

    def _note(self) -> None:
        self._idle.clear()
        self._has_items.set()
        if len(self._batch) >= self.max_items:
            self._full.set()

    @property
    def pending(self) -> int:
        """Operations waiting for the next batch."""
        return len(self._batch)

    async def drained(self, timeout: float | None = None) -> None:
        """Wait until everything queued so far has been written (or given up on)."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def run(self) -> None:
        """Drain the queue until cancelled; what is queued at cancellation is still written."""
        try:
            while True:
                await self._has_items.wait()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._full.wait()
                await self._flush()
        finally:
            if len(self._batch):
                batch = self._take()
                try:
                    await asyncio.to_thread(self._apply, batch)
                except Exception:
                    log.exception("final batch failed", size=len(batch))

    def _take(self) -> Batch:
        batch, self._batch = self._batch, Batch()
        self._has_items.clear()
        self._full.clear()
        return batch

    async def _flush(self) -> None:
        batch = self._take()
        for attempt in range(self.retries + 1):
            try:
                await asyncio.to_thread(self._apply, batch)
                self._run_callbacks(batch)
                break
            except Exception:
                self.stats.failures += 1
                log.exception("batch failed", size=len(batch), attempt=attempt)
                if attempt == self.retries:
                    self.stats.dropped_batches += 1
                    if self.dropped is not None:
                        self.dropped(batch)
                    break
                await asyncio.sleep(0.5 * (attempt + 1))
        self.stats.batches += 1
        self.stats.ops += len(batch) - len(batch.heartbeats) - len(batch.after_commit)
        self.stats.heartbeats += len(batch.heartbeats)
        if not len(self._batch):
            self._idle.set()

    def _run_callbacks(self, batch: Batch) -> None:
        """Call the batch's callbacks in order (those of the claims it won; :attr:`lost` in
        the place of a lost one's); log failures."""
        told: set[str] = set()
        for callback, claim in batch.after_commit:
            call = callback
            if claim is not None and not batch.won(claim):
                lost = batch.lost.get(claim)
                if lost is None or self.lost is None or claim in told:
                    continue  # a claim made without its JoinClaim, or told already
                told.add(claim)
                call = functools.partial(self.lost, claim, lost)
            try:
                call()
            except Exception:
                log.exception("after-commit callback failed")
