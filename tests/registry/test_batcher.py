"""The batching writer: a burst becomes a few transactions, heartbeats coalesce per node."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import select

from fogmesh.registry.batcher import WriteQueue
from fogmesh.registry.db import BatchWriter, make_engine, migrate
from fogmesh.registry.db.writes import NODES
from fogmesh.registry.ops import Batch, HeartbeatOp, LivenessOp
from tests.registry.support import USAGE_ROW


async def test_a_thousand_heartbeats_are_a_few_transactions(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate(engine)
    real = BatchWriter(engine)
    batches: list[Batch] = []

    def apply(batch: Batch) -> None:
        batches.append(batch)
        real(batch)

    queue = WriteQueue(apply, interval=0.15, max_items=5000)
    runner = asyncio.create_task(queue.run())
    try:
        for n in range(100):
            queue.put(LivenessOp(f"n{n:03d}", "online", 1.0))
        for seq in range(10):
            for n in range(100):
                queue.heartbeat(HeartbeatOp(f"n{n:03d}", seq, 1.0, 10.0, USAGE_ROW, 2.0))
        await queue.drained(timeout=30)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    assert len(batches) <= 3, [len(b) for b in batches]
    assert queue.stats.coalesced == 900
    with engine.connect() as conn:
        seqs = {row.last_seq for row in conn.execute(select(NODES.c.last_seq))}
    assert seqs == {9}
    engine.dispose()


async def test_cancelling_the_writer_still_writes_what_it_holds(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate(engine)
    queue = WriteQueue(BatchWriter(engine), interval=60.0)
    runner = asyncio.create_task(queue.run())
    await asyncio.sleep(0.05)
    queue.put(LivenessOp("late", "online", 1.0))
    await asyncio.sleep(0.05)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    with engine.connect() as conn:
        assert conn.execute(select(NODES.c.node)).scalars().all() == ["late"]
    engine.dispose()


async def test_a_failing_batch_is_retried_then_dropped_and_the_writer_lives() -> None:
    calls: list[int] = []

    def apply(batch: Batch) -> None:
        calls.append(len(batch))
        if len(calls) <= 4:
            raise RuntimeError("database down")

    queue = WriteQueue(apply, interval=0.01, retries=3)
    runner = asyncio.create_task(queue.run())
    try:
        queue.put(LivenessOp("a", "online", 1.0))
        await queue.drained(timeout=30)
        queue.put(LivenessOp("b", "online", 1.0))
        await queue.drained(timeout=30)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    assert queue.stats.dropped_batches == 1
    assert calls == [1, 1, 1, 1, 1]
