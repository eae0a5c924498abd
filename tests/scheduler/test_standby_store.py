"""A standby scheduler with a state dir of its own takes over with every app and placement.

The leader is a real ``fogmesh-scheduler`` process (state dir A) and is SIGKILLed; the standby
runs in the test (state dir B, never shared). The apps reach the standby only through the
retained app records on ``fm/v1/store/scheduler/...``. After the kill the standby must serve
every app with its placements, place a new one, and keep the old ones' desired states.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fogmesh.bus import MessageContext
from fogmesh.protocol import topics
from fogmesh.protocol.apps import AppListReply, AppReply, DeployApp, GetApp, ListApps
from fogmesh.protocol.appstore import AppRecord, StoredApp, app_record_topic
from fogmesh.protocol.manifest import AppManifest
from fogmesh.scheduler import SchedulerService
from fogmesh.scheduler.store import Store
from tests.scheduler.harness import (
    Fleet,
    client,
    manifest,
    running,
    scheduler_config,
    wait_for,
)
from tests.support.brokers import BrokerProcess

TIMEOUT = 15.0
BIN = Path(sys.executable).parent


def api(tenant: str, action: str) -> str:
    """The apps API topic of ``tenant``."""
    return topics.api(tenant, "apps", action)


def start_leader(port: int, root: Path) -> subprocess.Popen[bytes]:
    """``fogmesh-scheduler`` as client ``sched-a`` with state dir ``root/a``; fast timings."""
    config = root / "sched-a.yaml"
    config.write_text(
        f"client_id: sched-a\nbroker: {{host: 127.0.0.1, port: {port}, username: sched-a}}\n"
        f"state_dir: {root / 'a'}\nlease_ttl_s: 3\nlease_settle_s: 0.2\ntick_s: 0.2\n"
        "heartbeat_interval_s: 1\n"
    )
    log = (root / "sched-a.log").open("wb")
    return subprocess.Popen(
        [str(BIN / "fogmesh-scheduler"), "--config", str(config)], stdout=log, stderr=log
    )


async def test_standby_with_own_state_dir_takes_over_every_app(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    leader = start_leader(broker.port, tmp_path)
    standby = SchedulerService(scheduler_config(broker.port, tmp_path / "b", client_id="sched-b"))
    try:
        async with client(broker.port, "tester") as bus:
            fleet = Fleet(bus)
            await fleet.start()
            for node in ("node-a", "node-b"):
                await fleet.add(node)
            placed: dict[str, dict[str, str | None]] = {}
            # the leader process takes its lease; a deploy before that gets no answer
            deadline = time.monotonic() + 60
            while "web" not in placed:
                try:
                    reply = await bus.request(
                        api("acme", "deploy"),
                        DeployApp(manifest=manifest("web", {"name": "srv", "replicas": 2})),
                        AppReply,
                        timeout=2.0,
                    )
                except TimeoutError:
                    assert time.monotonic() < deadline, "the leader process never answered"
                    continue
                placed["web"] = {p.workload: p.node for p in reply.app.placements}
            reply = await bus.request(
                api("acme", "deploy"),
                DeployApp(manifest=manifest("db", {"name": "pg"})),
                AppReply,
                timeout=TIMEOUT,
            )
            placed["db"] = {p.workload: p.node for p in reply.app.placements}
            async with running(standby):
                # the records come from the bus alone: state dir B was empty
                await wait_for(lambda: len(standby.store.doc.apps) == 2, "standby has both apps")
                assert not standby.leader
                killed_at = time.monotonic()
                os.kill(leader.pid, signal.SIGKILL)
                leader.wait(timeout=TIMEOUT)
                await wait_for(standby.ready.is_set, "standby leads", timeout=60)
                failover_s = time.monotonic() - killed_at
                listed = await bus.request(
                    api("acme", "list"), ListApps(), AppListReply, timeout=TIMEOUT
                )
                assert sorted(a.name for a in listed.apps) == ["db", "web"]
                for name, where in placed.items():
                    got = await bus.request(
                        api("acme", "get"), GetApp(app=name), AppReply, timeout=TIMEOUT
                    )
                    assert {p.workload: p.node for p in got.app.placements} == where
                    for workload, host in where.items():
                        assert host is not None
                        await _desired(fleet, workload, host)
                new = await bus.request(
                    api("acme", "deploy"),
                    DeployApp(manifest=manifest("cache", {"name": "kv"})),
                    AppReply,
                    timeout=TIMEOUT,
                )
                target = new.app.placements[0].node
                assert target in {"node-a", "node-b"}
                await _desired(fleet, "cache-kv-0", str(target))
                # its record went out under the new term: a third instance would have it
                rec = await _retained_record(broker.port, "acme", "cache")
                assert rec.app is not None
                assert rec.source == "sched-b"
                assert rec.term > 1
                print(f"scheduler_failover_s={failover_s:.2f} (lease ttl 3 s)")
            await fleet.stop()
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait(timeout=TIMEOUT)


async def _desired(fleet: Fleet, workload: str, node: str) -> None:
    await wait_for(lambda: workload in fleet.names(node), f"{workload} desired on {node}")


async def _retained_record(port: int, tenant: str, app: str) -> StoredApp:
    got: list[StoredApp] = []

    async def on(msg: StoredApp, ctx: MessageContext) -> None:
        got.append(msg)

    async with client(port, "reader") as bus:
        bus.subscribe(app_record_topic(tenant, app), StoredApp, on)
        await wait_for(lambda: bool(got), "retained app record")
    return got[-1]


def test_file_merge_keeps_the_newer_copy_and_tombstones(tmp_path: Path) -> None:
    """A state dir's file folded into a store that has the bus's records: per app the newer
    stamp wins, a deleted app's tombstone beats an older live copy, and a file from before
    stamps counts as the oldest version."""
    m = manifest("web", {"name": "srv"})
    disk = Store(tmp_path)
    disk.doc.apps["acme/web"] = _app(m)
    disk.doc.apps["acme/old"] = _app(manifest("old", {"name": "x"}))
    disk.doc.stamps["acme/old"] = (1, 4)
    disk.doc.seq = 4
    disk.doc.apps["acme/legacy"] = _app(manifest("legacy", {"name": "y"}))  # no stamp
    disk.save()
    mem = Store(tmp_path)
    mem.doc.stamps["acme/old"] = (2, 1)  # deleted under term 2: a tombstone
    taken, _ = mem.take(StoredApp(tenant="acme", name="web", term=2, seq=2, app=_app(m)))
    assert taken
    taken, _ = mem.take(StoredApp(tenant="acme", name="web", term=1, seq=9, app=None))
    assert not taken  # older than (2, 2)
    mem.merge_file()
    assert sorted(mem.doc.apps) == ["acme/legacy", "acme/web"]
    assert mem.stamp("acme/legacy") == (0, 0)
    assert mem.stamp("acme/old") == (2, 1)
    rec = mem.record("acme/old", 3)
    assert rec.app is None
    assert rec.stamp == (3, 5)  # the counter past every copy's


def _app(m: AppManifest) -> AppRecord:
    return AppRecord(tenant="acme", manifest=m)
