"""Planned moves through real agents (processes), Mosquitto, the scheduler and the migrator."""

from __future__ import annotations

from pathlib import Path

from fogmesh.protocol.events import EventKind, MigrationData
from fogmesh.protocol.migration import MigrateWorkload, MigrationAction, StageOutcome
from tests.agent.support import wait_for
from tests.migrator.support import stack, state_file

WORKLOAD = "keep-worker-0"


async def test_by_hand_move_keeps_the_file_written_in_the_working_dir(
    tmp_path: Path, run_label: str
) -> None:
    async with stack(tmp_path, run_label, ["m-a", "m-b"]) as st:
        reply = await st.deploy("keep")
        source = reply.app.placements[0].node
        assert source is not None
        peer = "m-b" if source == "m-a" else "m-a"
        await wait_for(lambda: st.runs(source, WORKLOAD), 60, "the workload runs")
        await wait_for(lambda: state_file(st.agents[source]) is not None, 30, "the mark")
        mark_path = state_file(st.agents[source])
        assert mark_path is not None
        mark = mark_path.read_text()
        blob = (mark_path.parent / "blob").read_bytes()
        assert len(blob) == 2**20

        answer = await st.ask(MigrationAction.MIGRATE, MigrateWorkload(workload=WORKLOAD))

        assert answer.outcomes == {WORKLOAD: StageOutcome.MOVED}, answer.reasons
        assert answer.peers == {WORKLOAD: peer}
        await wait_for(lambda: st.where(WORKLOAD) == [peer], 60, "running on the peer only")
        moved = state_file(st.agents[peer])
        assert moved is not None
        assert moved.read_text() == mark  # the state came along; the workload kept its mark
        assert (moved.parent / "blob").read_bytes() == blob  # every chunk, in order
        await wait_for(lambda: state_file(st.agents[source]) is None, 60, "the source removed")
        await wait_for(lambda: bool(st.kinds(EventKind.MIGRATION_FINISHED)), 30, "the event")
        data = st.kinds(EventKind.MIGRATION_FINISHED)[0].payload_as(MigrationData)
        assert (data.trigger, data.from_, data.to, data.level) == ("by-hand", source, peer, 2)
        assert data.stateful
        assert data.state_bytes is not None
        assert data.state_bytes > 0
        assert data.freeze_s is not None
        assert set(data.stages_s) == {
            "peer_selection", "state_transfer", "configuration", "activation",
        }  # fmt: skip
        assert st.kinds(EventKind.MIGRATION_STARTED)
        moves = st.scheduler.store.doc.moves
        assert [(m.workload, m.from_node, m.to_node, m.trigger) for m in moves] == [
            (WORKLOAD, source, peer, "by-hand")
        ]
