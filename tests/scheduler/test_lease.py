"""Two scheduler instances: one leads, the other waits and takes over when the leader stops."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from fogmesh.scheduler import SchedulerService
from tests.scheduler.harness import running, scheduler_config, wait_for
from tests.support.brokers import BrokerProcess


async def test_standby_takes_over_when_leader_stops(broker: BrokerProcess, tmp_path: Path) -> None:
    state = tmp_path / "shared-state"
    first = SchedulerService(scheduler_config(broker.port, state, client_id="sched-1"))
    second = SchedulerService(scheduler_config(broker.port, state, client_id="sched-2"))
    first_task = asyncio.create_task(first.run())
    try:
        await wait_for(first.ready.is_set, "first leads")
        async with running(second):
            await wait_for(lambda: second.lease is not None, "second runs")
            lease = second.lease
            assert lease is not None
            await wait_for(lambda: lease.current is not None, "lease seen")
            assert lease.current is not None
            assert lease.current.holder == "sched-1"
            term = lease.current.term
            assert first.leader
            assert not second.leader
            first_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first_task
            await wait_for(lambda: second.leader, "second takes over after the ttl")
            assert lease.current.holder == "sched-2"
            assert lease.current.term == term + 1
    finally:
        first_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first_task
