"""The node asks: an agent whose disk fills up asks for its workloads to move, and the
migrator moves them to a peer (real agents, Mosquitto, the scheduler and the migrator). Each
node's state dir is a small tmpfs of its own, so the test can really fill one node's disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fogmesh.bus import MessageContext
from fogmesh.protocol.events import EventKind, MigrationData
from fogmesh.protocol.migration import MigrationTrigger, NodeTrouble, TroubleKind
from fogmesh.protocol.topics import NodeChannel, node_filter
from tests.agent.support import wait_for
from tests.migrator.support import stack, state_file

WORKLOAD = "keep-worker-0"
NODES = ["m-a", "m-b"]
DISK_MB = 48
TROUBLE_PERCENT = 80.0


@pytest.fixture
def small_disks(tmp_path: Path) -> Iterator[None]:
    """A tmpfs of ``DISK_MB`` under each node's state dir (unmounted after the test)."""
    mounted = []
    try:
        for node in NODES:
            where = tmp_path / node
            where.mkdir()
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0755", "tmpfs", str(where)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
            mounted.append(where)
        yield
    finally:
        for where in mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def _fill(where: Path, percent: float) -> None:
    """Write a file so that ``where``'s disk is ``percent`` full."""
    usage = shutil.disk_usage(where)
    want = int(usage.total * percent / 100) - (usage.total - usage.free)
    with (where / "ballast").open("wb") as fh:
        fh.write(os.urandom(1024) * (max(want, 0) // 1024))


@pytest.mark.usefixtures("small_disks")
async def test_an_agent_whose_disk_fills_up_has_its_workload_moved(
    tmp_path: Path, run_label: str
) -> None:
    config = tmp_path / "trouble.json"
    config.write_text(json.dumps({"trouble_disk_percent": TROUBLE_PERCENT, "trouble_repeat_s": 2}))
    args = {n: ["--config", str(config)] for n in NODES}
    async with stack(tmp_path, run_label, NODES, agent_args=args) as st:
        asks: list[NodeTrouble] = []

        async def on_trouble(msg: NodeTrouble, _ctx: MessageContext) -> None:
            asks.append(msg)

        st.bus.subscribe(node_filter(NodeChannel.TROUBLE), NodeTrouble, on_trouble)
        reply = await st.deploy("keep")
        source = reply.app.placements[0].node
        assert source is not None
        peer = next(n for n in NODES if n != source)
        await wait_for(lambda: st.runs(source, WORKLOAD), 60, "the workload runs")
        await wait_for(lambda: state_file(st.agents[source]) is not None, 30, "the mark")
        mark_path = state_file(st.agents[source])
        assert mark_path is not None
        mark = mark_path.read_text()
        assert not asks  # calm nodes ask nothing

        _fill(tmp_path / source, TROUBLE_PERCENT + 5)

        await wait_for(lambda: bool(st.kinds(EventKind.MIGRATION_FINISHED)), 120, "the move")
        data = st.kinds(EventKind.MIGRATION_FINISHED)[0].payload_as(MigrationData)
        assert (data.trigger, data.from_, data.to) == (MigrationTrigger.NODE_ASKS, source, peer)
        assert {a.node for a in asks} == {source}
        assert asks[0].kind is TroubleKind.DISK_FULL
        await wait_for(lambda: st.where(WORKLOAD) == [peer], 60, "running on the peer only")
        moved = state_file(st.agents[peer])
        assert moved is not None
        assert moved.read_text() == mark  # a planned move: the state came along
        assert not st.kinds(EventKind.MIGRATION_FAILED)
