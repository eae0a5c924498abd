"""Registry ingest: how fast heartbeats become queryable rows, against a real Mosquitto.

A simulator (``registry_sim.py``: child processes, several MQTT connections each, many
simulated nodes per connection) publishes real hello / state (retained, QoS 1) and heartbeat
(QoS 0) messages; the registry runs as its own process (``fogmesh-registry``) on SQLite
(WAL), or on PostgreSQL with ``--db URL`` (in a schema of its own, dropped afterwards).
Figures per fleet size:

* ``lag``: time from a heartbeat's publish (its ``ts``) until its row is visible in the
  database, for a sample of nodes, polled every 50 ms (so up to +50 ms pessimistic).
* ``broker_baseline``: the raw broker publish -> subscribe latency of the same sampled
  heartbeats, to a plain subscriber in this process, in the same run.
* ``ingest_per_s``: heartbeats committed per second over the window (all nodes), and the
  registry's CPU use (percent of one core).
* ``join_s``: from the first hello until every node's facts and a heartbeat are stored (the
  join storm: every node says hello and online at once).
* ``live_nodes_not_online``: nodes the registry judged stale or offline at any moment of the
  run (its ``node-stale`` / ``node-lost`` events) or that are not online at the end. Every
  simulated node is alive throughout, so this must be 0.
* ``load_average``: the machine's load (as ``uptime``) before and after, since other work
  shares the cores.

Default (short): 1,000 nodes every 1 s. ``--full``: 10,000 nodes every 10 s, then larger
fleets until p99 lag reaches 1 s (or nodes flap), printing the largest fleet that held.
Simulated nodes share connections, so they leave no per-node last will (not needed here).

With ``--replicas N`` (N > 1) the registries share the fleet (``--share``: Mosquitto gives each
message to one of them) and, after the window, the first is killed (SIGKILL): ``failover_s`` is
the time until every node has a heartbeat stored that was made after the kill (one interval
when nothing fails; Mosquitto notices the dead replica after 1.5 of its keepalives).

``--broker nats`` runs the fleet over the three-member NATS cluster (replicas split it with
``--share-by registry``). Each flap event is kept with the phase of the run it came in (join,
settle, window, failover), the replica that judged it and the silence it judged
(``flaps_by_phase``, ``flap_silent_max_s``), and the flapped nodes' stored heartbeats are
checked for holes after the window (``flapped_with_heartbeats_not_stored``: lost on the way or
left by every replica, rather than stored late); ``joined_more_than_once`` counts the nodes
whose ``node-joined`` came twice.

Run: ``.venv/bin/python bench/registry.py [--nodes N --interval S --measure S] [--db URL]
[--replicas N] [--broker nats]`` (writes
``bench/results/registry-{sqlite|postgresql}[-Nreplicas][-nats].json``).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from _common import RESULTS, write_result
from registry_report import holds, table
from registry_run import run_fleet

__all__ = ["holds", "main", "main_async", "run_fleet", "table"]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    plan = [(args.nodes, args.interval, args.measure)]
    if args.full:
        plan = [(10_000, 10.0, 60.0), (15_000, 10.0, 30.0), (20_000, 10.0, 30.0)]
        plan.append((30_000, 10.0, 30.0))
    runs: list[dict[str, Any]] = []
    for nodes, interval, measure_s in plan:
        print(f"fleet of {nodes} nodes, heartbeat every {interval} s ...", flush=True)
        result = await run_fleet(
            nodes, interval, measure_s, args.db, replicas=args.replicas, broker=args.broker
        )
        runs.append(result)
        print(table(result), flush=True)
        if not holds(result):
            break
    held = [r["nodes"] for r in runs if holds(r)]
    return {
        "broker": args.broker,
        "db": "sqlite" if args.db is None else "postgresql",
        "goal": "10,000 nodes every 10 s with p99 lag < 1 s and no live node stale or offline",
        "runs": runs,
        "largest_fleet_held": max(held) if held else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--full", action="store_true", help="10,000 nodes, then larger fleets")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--measure", type=float, default=15.0)
    p.add_argument("--db", default=None, help="a PostgreSQL URL (default: a SQLite file)")
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="registries sharing the fleet ($share); >1: the first is killed after the window",
    )
    p.add_argument(
        "--broker",
        choices=("mosquitto", "nats"),
        default="mosquitto",
        help="nats: the three-member cluster, replicas with --share-by registry",
    )
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(main_async(args))
    suffix = "" if args.replicas == 1 else f"-{args.replicas}replicas"
    suffix += "" if args.broker == "mosquitto" else f"-{args.broker}"
    path = write_result(f"registry-{report['db']}{suffix}", report)
    print(f"largest fleet held (p99 < 1 s, no flaps): {report['largest_fleet_held']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
