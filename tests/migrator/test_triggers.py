"""Drain, a move no peer can take, and a node killed: real agents, Mosquitto, the scheduler and
the migrator."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from fogmesh.protocol import ErrorCode, RemoteError, topics
from fogmesh.protocol.events import EventKind, MigrationData
from fogmesh.protocol.migration import (
    MIGRATIONS_RESOURCE,
    MigrateWorkload,
    MigrationAction,
    MigrationReply,
    StageOutcome,
)
from tests.agent.support import wait_for
from tests.migrator.support import TENANT, Stack, stack, state_file


def _only_on(st: Stack, workload: str, node: str) -> bool:
    return st.where(workload) == [node]


async def test_drain_moves_every_workload_off_the_node_with_its_state(
    tmp_path: Path, run_label: str
) -> None:
    async with stack(tmp_path, run_label, ["d-a", "d-b"]) as st:
        placed = [
            (await st.deploy(name, requests={"cpu": "50m", "memory": "16Mi"})).app.placements[0]
            for name in ("one", "two")
        ]
        names = [p.workload for p in placed]
        # drain the node holding the first app (the other may sit on either node)
        node = placed[0].node
        assert node is not None
        other = "d-b" if node == "d-a" else "d-a"
        for p in placed:
            where, what = p.node, p.workload
            assert where is not None
            await wait_for(partial(st.runs, where, what), 60, f"{what} runs")
        on_node = sorted(p.workload for p in placed if p.node == node)

        # through the command line, as an operator would: `fogmesh drain NODE`
        done = await asyncio.to_thread(
            subprocess.run,
            [str(Path(sys.executable).parent / "fogmesh"), "--broker",
             f"127.0.0.1:{st.broker.port}", "--tenant", TENANT, "drain", node],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

        assert done.returncode == 0, done.stdout + done.stderr
        assert sorted(done.stdout.split("\n")[:-1]) == [f"{w}: moved {other}" for w in on_node]
        for name in names:
            await wait_for(partial(_only_on, st, name, other), 60, f"{name} on {other} only")
        await wait_for(lambda: state_file(st.agents[node]) is None, 60, "nothing left there")
        finished = st.kinds(EventKind.MIGRATION_FINISHED)
        assert sorted(e.workload or "" for e in finished) == on_node
        assert {e.payload_as(MigrationData).trigger for e in finished} == {"drain"}


async def test_no_peer_fits_the_event_says_why_and_the_workload_keeps_running(
    tmp_path: Path, run_label: str
) -> None:
    async with stack(tmp_path, run_label, ["n-a", "n-b"]) as st:
        # the peer cannot give 64 cores: the agent answers level 1 with the reason
        reply = await st.deploy("big", limits={"cpu": 64})
        source = reply.app.placements[0].node
        assert source is not None
        peer = "n-b" if source == "n-a" else "n-a"
        workload = reply.app.placements[0].workload
        await wait_for(lambda: st.runs(source, workload), 60, "the workload runs")

        answer = await st.ask(MigrationAction.MIGRATE, MigrateWorkload(workload=workload))

        assert answer.outcomes == {workload: StageOutcome.FAILED}
        assert "no peer" in answer.reasons[workload]
        await wait_for(lambda: bool(st.kinds(EventKind.MIGRATION_FAILED)), 30, "the event")
        data = st.kinds(EventKind.MIGRATION_FAILED)[0].payload_as(MigrationData)
        assert data.from_ == source
        assert data.reasons[peer].startswith("level 1: cpu")
        assert data.reasons[source] == "the source"
        assert st.where(workload) == [source]  # never frozen: it kept running
        assert st.scheduler.store.doc.moves == []

        # bad requests get an error reply, never silence
        with pytest.raises(RemoteError) as unknown:
            await st.ask(MigrationAction.MIGRATE, MigrateWorkload(workload="nope"))
        assert unknown.value.code is ErrorCode.NOT_FOUND
        topic = topics.api(TENANT, MIGRATIONS_RESOURCE, MigrationAction.MIGRATE)
        foreign = MigrateWorkload(workload=workload, tenant="other")
        with pytest.raises(RemoteError) as other:
            await st.bus.request(topic, foreign, MigrationReply, timeout=30)
        assert other.value.code is ErrorCode.UNAUTHORISED


async def test_a_killed_node_s_workload_runs_on_a_peer_and_the_node_is_avoided(
    tmp_path: Path, run_label: str
) -> None:
    async with stack(tmp_path, run_label, ["k-a", "k-b", "k-c"]) as st:
        reply = await st.deploy("survive")
        source = reply.app.placements[0].node
        assert source is not None
        workload = reply.app.placements[0].workload
        await wait_for(lambda: st.runs(source, workload), 60, "the workload runs")

        st.agents[source].kill()  # kill -9 of the agent process
        await wait_for(lambda: source not in st.migrator.fleet.live(), 60, "the migrator sees it")

        others = sorted(set(st.agents) - {source})
        await wait_for(
            lambda: any(st.runs(n, workload) for n in others), 90, "the workload on a peer"
        )
        assert st.migrator.guard.avoid(source) is not None  # no planned move onto it for a while
        peer = next(n for n in others if st.runs(n, workload))
        # a by-hand move now may not go back onto the lost node
        answer = await st.ask(
            MigrationAction.MIGRATE, MigrateWorkload(workload=workload, to=source)
        )
        assert answer.outcomes == {workload: StageOutcome.FAILED}
        assert st.runs(peer, workload)
