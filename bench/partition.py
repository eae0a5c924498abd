"""A cut WAN, measured: readings through a partition, a 1,000-node reconnect storm, the drain.

Two network namespaces (``tests.support.netns``; only their own addresses are touched): the
cloud (broker, registry, a persistent readings subscriber) and the site (broker with its link,
keepalive 5 s, ``drain: {rate: --drain-rate, backlog: 1000}``; ``--nodes`` simulated nodes
heartbeating every ``--interval`` s, ``bench/registry_sim.py``'s; a reading publisher at
10/s). Once the registry holds every node online, the veth is cut silently (netem loss or
nftables drops) for ``--partition-s`` (default 300), then healed, and the run waits until the
registry has every node online again and every reading arrived. Written to
``bench/results/partition.json``:

- ``readings_sent_at_site``, ``readings_lost`` (sent, acknowledged by the site broker, never
  seen at the cloud), ``readings_out_of_order``;
- ``storm_nodes`` (the nodes whose queued traffic and live heartbeats cross at the heal) and
  ``healthy_nodes_marked_lost`` (``node-lost`` events of those nodes: none ever stopped);
- ``drain_msgs_per_s`` (the link's backlog: messages sent / seconds, from its own log),
  with ``drain_backlog``, ``drain_coalesced``, ``drain_s``;
- ``storm_nodes``: at the heal every simulated node reconnects at once (its connection closed
  and opened again, hello, state and a heartbeat each), while the link's backlog crosses;
- ``workloads_evicted``, ``site_local_migration_s`` and more from the part with real agents, a
  node dying during the partition (``bench/partition_agents.py``).

``python bench/partition.py [--partition-s 300] [--nodes 1000] [--cases storm,agents]``
(one case alone merges its figures into the result file); needs root and ``ip netns``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from _common import load_average, read_result, write_result
from partition_agents import site_autonomy
from partition_sims import CLOUD_PORT, SITE_PORT, site_nodes, watch_readings
from partition_storm import storm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    site = sub.add_parser("site")
    site.add_argument("--root", type=Path, required=True)
    site.add_argument("--nodes", type=int, required=True)
    site.add_argument("--interval", type=float, required=True)
    watch = sub.add_parser("watch")
    watch.add_argument("--root", type=Path, required=True)
    parser.add_argument("--partition-s", type=float, default=300.0)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=20.0, help="heartbeat seconds")
    parser.add_argument("--drain-rate", type=float, default=500.0, help="link drain.rate")
    parser.add_argument("--cases", default="storm,agents", help="storm, agents or both")
    opts = parser.parse_args()
    if opts.cmd == "site":
        stop, out = opts.root / "stop", opts.root / "site.json"
        asyncio.run(site_nodes(SITE_PORT, opts.nodes, opts.interval, stop, out))
        return
    if opts.cmd == "watch":
        asyncio.run(watch_readings(CLOUD_PORT, opts.root / "stop", opts.root / "watch.json"))
        return
    cases = set(opts.cases.split(","))
    # one case alone is merged into the figures of the last run of the other
    stale = {"workloads_evicted_reason", "site_local_migration_s_reason"}
    result = {k: v for k, v in read_result("partition").items() if k not in stale}
    if "storm" in cases:
        result.update(storm(opts))
    if "agents" in cases:
        result.update(site_autonomy())
        result["load_average_end"] = load_average()
    path = write_result("partition", result)
    for key, value in result.items():
        print(f"  {key:32} {value}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
