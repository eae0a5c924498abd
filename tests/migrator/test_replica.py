"""Unplanned moves keep recent state: a stateful workload's state is replicated to peers, and
after a kill -9 of its agent and its process the replacement starts from the replica."""

from __future__ import annotations

import io
import os
import signal
import tarfile
from pathlib import Path
from typing import Any

from fogmesh.agent.runtime.native import NativeRuntime
from fogmesh.protocol import topics
from fogmesh.protocol.apps import APPS_RESOURCE, AppAction, AppDeletedReply, DeleteApp
from fogmesh.protocol.events import EventKind, MigrationData
from tests.agent.support import AgentProc, wait_for
from tests.migrator.support import TENANT, Stack, stack, state_file

WORKLOAD = "count-worker-0"
# Counts up from the value it finds (atomically rewritten every 0.2 s) and notes where it began.
COUNTER = (
    'S="$FOGMESH_STATE_DIR"; mkdir -p "$S"; n=$(cat "$S/count" 2>/dev/null || echo 0); '
    'echo "$n" > "$S/began"; trap \'exit 0\' TERM; '
    'while true; do n=$((n+1)); echo "$n" > "$S/count.tmp"; mv "$S/count.tmp" "$S/count"; '
    "sleep 0.2; done"
)


def _replica_count(agent: AgentProc) -> int | None:
    """The counter inside the replica staged on ``agent`` for the workload, if one waits."""
    staged = sorted(agent.state_dir.rglob(f"handover/in/{TENANT}__{WORKLOAD}.tar"))
    try:
        data = staged[0].read_bytes() if staged else None
    except FileNotFoundError:  # dropped (or replaced) between the listing and the read
        data = None
    if data is None:
        return None
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("state/count")), None)
        fh = tar.extractfile(member) if member is not None else None
        return int(fh.read()) if fh is not None else None


async def _kill_workloads(agent: AgentProc) -> None:
    """kill -9 of the dead agent's workload processes (each is its own process group)."""
    native = NativeRuntime(agent.state_dir / "native", agent.node)
    try:
        for inst in await native.list_instances():
            if inst.runtime_id:
                os.killpg(int(inst.runtime_id), signal.SIGKILL)
    finally:
        await native.close()


async def test_a_killed_node_s_stateful_workload_restarts_from_its_replica(
    tmp_path: Path, run_label: str
) -> None:
    nodes = ["r-a", "r-b", "r-c"]
    async with stack(tmp_path, run_label, nodes, replica_interval_s=1.0) as st:
        reply = await st.deploy(
            "count", command=["-c", COUNTER], migration="stateful",
            requests={"cpu": "50m", "memory": "128Mi"},  # mv needs more room than 16Mi
        )  # fmt: skip
        source = reply.app.placements[0].node
        assert source is not None
        peers = [n for n in nodes if n != source]
        await wait_for(lambda: st.runs(source, WORKLOAD), 60, "the workload runs")
        key = f"{TENANT}/{WORKLOAD}"
        replicas = st.migrator.replicator
        assert replicas is not None
        await wait_for(
            lambda: key in replicas.replicas and sorted(replicas.replicas[key].holders) == peers,
            60, "a replica on both peers",
        )  # fmt: skip
        # a later copy, so the replica is not the counter's first value
        await wait_for(
            lambda: all((_replica_count(st.agents[p]) or 0) >= 3 for p in peers), 60,
            "the replica counted on",
        )  # fmt: skip
        floor = min(_replica_count(st.agents[p]) or 0 for p in peers)

        st.agents[source].kill()  # kill -9 of the agent, then of its workload
        await _kill_workloads(st.agents[source])

        await wait_for(lambda: any(st.runs(p, WORKLOAD) for p in peers), 90, "on a peer")
        peer = next(p for p in peers if st.runs(p, WORKLOAD))
        began = state_file(st.agents[peer], "began")
        assert began is not None
        assert int(began.read_text()) >= floor > 0  # from the replica, not from zero
        data = await _failover_event(st)
        assert (data.from_, data.to, data.stateful) == (source, peer, True)
        assert data.replica_age_s is not None
        assert data.state_bytes is not None
        assert st.kinds(EventKind.MIGRATION_STARTED)


async def test_an_unchanged_state_is_not_sent_again_and_a_silent_death_fails_over(
    tmp_path: Path, run_label: str
) -> None:
    nodes = ["q-a", "q-b"]
    async with stack(tmp_path, run_label, nodes, replica_interval_s=0.5) as st:
        # the stack's default script writes its mark once, then idles: its state stays as it is
        reply = await st.deploy("idle", migration="stateful")
        source = reply.app.placements[0].node
        assert source is not None
        peer = next(n for n in nodes if n != source)
        workload = reply.app.placements[0].workload
        key = f"{TENANT}/{workload}"
        replicas = st.migrator.replicator
        assert replicas is not None
        await wait_for(lambda: key in replicas.replicas, 60, "a replica")
        staged = sorted(st.agents[peer].state_dir.rglob(f"handover/in/{TENANT}__{workload}.tar"))
        assert staged
        sent = staged[0].stat().st_mtime_ns
        first = replicas.replicas[key].taken_at
        await wait_for(lambda: replicas.replicas[key].taken_at > first + 2.0, 60, "renewed")
        assert staged[0].stat().st_mtime_ns == sent  # checked again, not sent again
        mark = state_file(st.agents[source])
        assert mark is not None
        before = mark.read_text()

        agent = st.agents[source].proc
        assert agent is not None
        agent.send_signal(signal.SIGSTOP)  # silent: heartbeats stop, no last will
        try:
            await _kill_workloads(st.agents[source])
            await wait_for(lambda: st.runs(peer, workload), 90, "on the peer")
            moved = state_file(st.agents[peer])
            assert moved is not None
            assert moved.read_text() == before  # the replica's state, not a fresh one
            await wait_for(
                lambda: any(
                    e.payload_as(MigrationData).trigger == "node-lost"
                    for e in st.kinds(EventKind.MIGRATION_FINISHED)
                ),
                30, "the failover's event",
            )  # fmt: skip
        finally:
            agent.send_signal(signal.SIGCONT)


async def test_the_scheduler_re_places_a_dead_node_s_workload_on_its_replica_s_holder(
    tmp_path: Path, run_label: str
) -> None:
    nodes = ["h-a", "h-b", "h-c"]
    # one holder of two peers, made the dearer one by its cost (a ballast takes most of its
    # CPU): the scheduler still re-places the workload there first, since it holds the state
    async with stack(tmp_path, run_label, nodes, replica_interval_s=1.0, replica_peers=1) as st:
        reply = await st.deploy("one", migration="stateful")
        source = reply.app.placements[0].node
        assert source is not None
        workload = reply.app.placements[0].workload
        key = f"{TENANT}/{workload}"
        replicas = st.migrator.replicator
        assert replicas is not None
        await wait_for(lambda: key in replicas.replicas, 60, "a replica")
        [holder] = replicas.replicas[key].holders
        await wait_for(lambda: st.scheduler.ops.holders.get(key) == [holder], 30, "told")
        ballast = await st.deploy("ballast", placement={"node": holder},
                                  requests={"cpu": "1800m", "memory": "16Mi"})  # fmt: skip
        assert ballast.app.placements[0].node == holder
        mark = state_file(st.agents[source])
        assert mark is not None
        before = mark.read_text()

        st.agents[source].kill()
        await _kill_workloads(st.agents[source])
        st.gone.add(source)  # its last heartbeat may show the workload it ran

        await wait_for(lambda: st.where(workload) == [holder], 90, "on the holder only")
        moved = sorted((st.agents[holder].state_dir / "native").rglob(f"{workload}/**/mark"))
        assert [m.read_text() for m in moved] == [before]  # (the ballast has its own)
        data = await _failover_event(st)
        assert (data.to, data.stateful) == (holder, True)
        replaced = [e for e in st.kinds(EventKind.REPLACED) if e.workload == workload]
        assert [e.node for e in replaced] == [holder]  # placed there at once ...
        assert not [m for m in st.scheduler.store.doc.moves if m.workload == workload]  # ... so


async def test_a_deleted_workload_s_replica_is_dropped_and_never_restored(
    tmp_path: Path, run_label: str
) -> None:
    nodes = ["s-a", "s-b"]
    async with stack(tmp_path, run_label, nodes, replica_interval_s=0.5) as st:
        counter: dict[str, Any] = {"command": ["-c", COUNTER], "migration": "stateful",
                   "requests": {"cpu": "50m", "memory": "128Mi"}}  # fmt: skip
        reply = await st.deploy("count", **counter)
        source = reply.app.placements[0].node
        assert source is not None
        peer = next(n for n in nodes if n != source)
        key = f"{TENANT}/{WORKLOAD}"
        await wait_for(lambda: (_replica_count(st.agents[peer]) or 0) >= 3, 60, "a replica")

        topic = topics.api(TENANT, APPS_RESOURCE, AppAction.DELETE)
        await st.bus.request(topic, DeleteApp(app="count"), AppDeletedReply, timeout=30)
        await wait_for(lambda: _replica_count(st.agents[peer]) is None, 60, "the copy dropped")
        await wait_for(lambda: key not in st.scheduler.ops.holders, 30, "the scheduler told")
        await wait_for(lambda: not st.where(WORKLOAD), 60, "the old one gone")

        # the same app again, on the node that held the old copy: it starts from nothing
        await st.deploy("count", **counter, placement={"node": peer})
        await wait_for(lambda: st.runs(peer, WORKLOAD), 60, "the new deployment runs")
        began = state_file(st.agents[peer], "began")
        assert began is not None
        assert began.read_text().strip() == "0"


async def _failover_event(st: Stack) -> MigrationData:
    """The ``migration-finished`` of the node-lost failover, once it came."""

    def finished() -> list[MigrationData]:
        found = (e.payload_as(MigrationData) for e in st.kinds(EventKind.MIGRATION_FINISHED))
        return [d for d in found if d.trigger == "node-lost"]

    await wait_for(lambda: bool(finished()), 30, "the failover's event")
    return finished()[0]
