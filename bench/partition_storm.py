"""The partition bench's storm case, run from the root namespace: the cloud (broker, registry,
readings subscriber) and the site (broker with its link, simulated nodes, a reading publisher)
in two namespaces, the WAN cut and healed, and the figures of readings, nodes and the drain."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import load_average
from ns_mesh import ns_mesh
from ns_processes import NsProcesses
from partition_sims import CLOUD_PORT, PASSWORD, SITE_PORT, SUBSCRIBED, WAN_PORT, read_json

from tests.support.netns import NsPair, netns_unavailable, ns_pair

__all__ = ["storm"]

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent


def _mesh(root: Path, pair: NsPair, drain_rate: float) -> Path:
    rules = [
        {"pattern": "fm/v1/nodes/#", "direction": "out", "qos": 1},
        {"pattern": "fm/v1/data/#", "direction": "out", "qos": 1},
    ]
    return ns_mesh(root, pair, site="site", ports=(CLOUD_PORT, WAN_PORT, SITE_PORT),
                   password=PASSWORD, rules=rules, keepalive=5, backoff_base=0.5, backoff_cap=5,
                   drain={"rate": drain_rate, "backlog": 1000})  # fmt: skip


class StormRun(NsProcesses):
    """The storm case's processes; its children leave when the stop file appears."""

    def __init__(self, root: Path, pair: NsPair) -> None:
        super().__init__(root, pair)
        self.stop_file = root / "stop"

    def broker(self, name: str, ns: str, mesh: Path) -> None:
        # INFO: the link logs its drain (sent, coalesced, seconds), which the figures read
        self.start(name, ns, str(BIN / "fogmesh-broker"), "--log-level", "INFO", "run",
                   "--mesh", str(mesh), "--broker", name, ready=f"ready {name}")  # fmt: skip

    def stop(self) -> None:
        self.stop_file.touch()
        for name in ("sims", "watch"):  # they write their figures and leave on their own
            with contextlib.suppress(KeyError, subprocess.TimeoutExpired):
                self.procs[name].wait(timeout=150)
        super().stop()


def _db(root: Path, since: float = 0.0) -> dict[str, Any]:
    """The registry's view: node states, and the nodes it judged lost from ``since`` (unix)."""
    with contextlib.closing(sqlite3.connect(root / "registry.db", timeout=30)) as db:
        try:
            states = dict(db.execute("SELECT node, state FROM nodes").fetchall())
            rows = db.execute(
                "SELECT node FROM events WHERE kind = 'node-lost' AND ts >= ?", (since,)
            )
            lost = {r[0] for r in rows}
        except sqlite3.OperationalError:  # not created yet
            return {"states": {}, "lost": set()}
    return {"states": states, "lost": lost}


def _count(states: dict[str, str], state: str) -> int:
    return sum(1 for s in states.values() if s == state)


def storm(opts: argparse.Namespace) -> dict[str, Any]:
    reason = netns_unavailable()
    if reason is not None:
        raise SystemExit(f"bench/partition.py: {reason}")
    root = Path(tempfile.mkdtemp(prefix="fm-partition-bench-"))
    me = [sys.executable, str(HERE / "partition.py")]
    with ns_pair() as pair:
        run = StormRun(root, pair)
        cut_wall, warm_lost, method = time.time(), 0, "(no cut)"
        try:
            mesh = _mesh(root, pair, opts.drain_rate)
            run.broker("cloud", pair.cloud, mesh)
            run.broker("site", pair.site, mesh)
            run.start(
                "registry", pair.cloud, str(BIN / "fogmesh-registry"),
                "--broker-host", "127.0.0.1", "--broker-port", str(CLOUD_PORT),
                "--broker-username", "svc", "--broker-password", PASSWORD,
                "--client-id", "registry", "--default-interval", str(opts.interval),
                "--missed", "3", "--db", f"sqlite:///{root / 'registry.db'}",
            )  # fmt: skip
            # readings sent before the cloud's subscription stands would count as lost
            run.start("watch", pair.cloud, *me, "watch", "--root", str(root), ready=SUBSCRIBED)
            run.start("sims", pair.site, *me, "site", "--root", str(root),
                      "--nodes", str(opts.nodes), "--interval", str(opts.interval))  # fmt: skip
            deadline = time.monotonic() + 300
            while _count(_db(root)["states"], "online") < opts.nodes:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nodes never online: {len(_db(root)['states'])}")
                time.sleep(1.0)
            print(f"{opts.nodes} nodes online; cutting for {opts.partition_s:g}s", flush=True)

            warm_lost = len(_db(root)["lost"])
            method = pair.cut()
            cut_at, cut_wall = time.monotonic(), time.time()
            unreachable_max = 0
            while time.monotonic() - cut_at < opts.partition_s:
                time.sleep(2.0)
                unreachable_max = max(unreachable_max, _count(_db(root)["states"], "unreachable"))
            pair.heal()
            (root / "reconnect").touch()  # every simulated node reconnects at once
            healed = time.monotonic()
            print("healed; waiting for the nodes and the readings", flush=True)
            deadline = healed + max(180.0, opts.partition_s)
            online_after_s = None
            while time.monotonic() < deadline:
                states = _db(root)["states"]
                if online_after_s is None and _count(states, "online") == opts.nodes:
                    online_after_s = round(time.monotonic() - healed, 1)
                drained = "backlog to remote crossed" in run.log("site")
                if online_after_s is not None and drained:
                    break
                time.sleep(1.0)
            time.sleep(5.0)  # the last readings published before the stop
        finally:
            run.stop()
        view = _db(root, cut_wall)
        site = read_json(root / "site.json", {})
        seen: list[int] = read_json(root / "watch.json", [])
        sent = int(site.get("readings_sent", 0))
        distinct = set(seen)
        firsts = list(dict.fromkeys(seen))
        drain = re.findall(
            r"draining (\d+) to remote.*\n(?:.*\n)*?.*backlog to remote crossed: (\d+) sent,"
            r" (\d+) coalesced in ([\d.]+)s",
            run.log("site"),
        )
        backlog, d_sent, coalesced, drain_s = (
            (int(drain[-1][0]), int(drain[-1][1]), int(drain[-1][2]), float(drain[-1][3]))
            if drain
            else (None, None, None, None)
        )
        return {
            "partition_s": opts.partition_s,
            "partition_s_note": "the issue's figure is a 5-minute partition (300 s)"
            if opts.partition_s != 300
            else "the issue's 5-minute partition",
            "cut": method,
            "readings_sent_at_site": sent,
            "readings_received_at_cloud": len(distinct),
            "readings_lost": len(set(range(sent)) - distinct),
            "readings_out_of_order": sum(1 for a, b in itertools.pairwise(firsts) if b < a),
            "readings_duplicates": len(seen) - len(distinct),
            "storm_nodes": opts.nodes,
            "storm_note": "at the heal every simulated node reconnects to its site broker at"
            " once (hello, state, heartbeat each) while the link carries the queued backlog",
            "unreachable_max": unreachable_max,
            "healthy_nodes_marked_lost": len(view["lost"]),
            "healthy_nodes_marked_lost_note": "node-lost events from the cut on; before it,"
            f" while {opts.nodes} nodes joined on a loaded machine: {warm_lost}",
            "online_after_heal_s": online_after_s,
            "nodes_online_at_end": _count(view["states"], "online"),
            "drain_rate_configured": opts.drain_rate,
            "drain_backlog": backlog,
            "drain_sent": d_sent,
            "drain_coalesced": coalesced,
            "drain_s": drain_s,
            "drain_msgs_per_s": round(d_sent / drain_s, 1) if d_sent and drain_s else None,
            "drain_msgs_per_s_note": "backlog messages sent per second of the drain; the"
            " coalesced ones (deleted unsent) are not counted; the configured rate is a ceiling",
            "load_average_end": load_average(),
        }
