"""Overload: a hot node sheds one workload per window, and two hot nodes do not bounce a
workload back and forth (real agents, Mosquitto, the scheduler and the migrator)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from fogmesh.protocol.events import Event, EventKind, MigrationData
from tests.agent.support import AgentProc, wait_for
from tests.migrator.support import Stack, stack

# Memory use is above 1 % on any machine, so every node is "overloaded"; CPU never counts.
HOT: dict[str, Any] = {
    "overload_cpu_percent": 100.0,
    "overload_memory_percent": 1.0,
    "overload_clear_percent": 0.5,
    "overload_window_s": 4.0,
    "cooldown_s": 600.0,
}


def _overload(st: Stack, kind: EventKind) -> list[Event]:
    return [e for e in st.kinds(kind) if e.payload_as(MigrationData).trigger == "overload"]


def _node_of(st: Stack, workload: str) -> str | None:
    for _app, p in st.scheduler.store.placements():
        if p.name == workload:
            return p.node
    return None


async def test_a_hot_node_sheds_one_workload_at_a_time_and_nothing_bounces_back(
    tmp_path: Path, run_label: str
) -> None:
    async with stack(tmp_path, run_label, ["o-a"], **HOT) as st:
        names = [(await st.deploy(n)).app.placements[0].workload for n in ("first", "second")]
        for name in names:
            await wait_for(partial(st.runs, "o-a", name), 60, f"{name} runs on o-a")
        peer = AgentProc("o-b", st.broker.port, tmp_path / "o-b", run_label,
                         extra=["--runtimes", "native"])  # fmt: skip
        st.agents["o-b"] = peer.start()

        await wait_for(lambda: len(_overload(st, EventKind.MIGRATION_FINISHED)) == 2, 150,
                       "both workloads shed off o-a")  # fmt: skip
        finished = _overload(st, EventKind.MIGRATION_FINISHED)
        assert sorted(e.workload or "" for e in finished) == sorted(names)
        assert all(e.payload_as(MigrationData).to == "o-b" for e in finished)
        # one at a time: the second move started only after the first had finished
        order = [(e.kind, e.workload) for e in st.events if e.kind in (
            EventKind.MIGRATION_STARTED, EventKind.MIGRATION_FINISHED)]  # fmt: skip
        first, second = finished[0].workload, finished[1].workload
        assert order.index((EventKind.MIGRATION_FINISHED, first)) < max(
            i for i, o in enumerate(order) if o == (EventKind.MIGRATION_STARTED, second)
        )

        # o-b is hot too: let it judge twice more; the cool-down keeps both where they are
        view = st.migrator.fleet.node("o-b")
        seen: list[float | None] = [view.hot_since]

        def judged_again() -> bool:
            if view.hot_since != seen[-1]:
                seen.append(view.hot_since)
            return len(seen) >= 3

        await wait_for(judged_again, 60, "o-b judged twice more")
        assert [_node_of(st, n) for n in names] == ["o-b", "o-b"]
        assert len(_overload(st, EventKind.MIGRATION_FINISHED)) == 2
