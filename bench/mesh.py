"""Broker-mesh benchmark: bridge-hop latency, bridge throughput, queue drain after a partition.

Runs real processes on loopback: a site broker (embedded amqtt, with its link) and a cloud
broker that is either embedded amqtt or Mosquitto. The bench's publishers and subscribers are
plain paho clients (each network loop in a thread, as the issue's Mosquitto figures were
measured), so the clients are not what limits the figures. In the same run, the peer
baseline: a site Mosquitto whose own bridge (``connection`` block, QoS 1, persistent session)
carries the same rule to a cloud Mosquitto, measured the same way (``peer_hop_ratio``,
``peer_burst_msgs_per_s``, ``peer_drain_msgs_per_s`` beside fogmesh's ``hop_ratio``,
``burst_msgs_per_s``, ``drain_msgs_per_s`` on each cloud end). On the fogmesh ends it also
reads the bytes the link put on its sockets from its status (``wire_bytes_out`` /
``wire_bytes_in`` to and from the cloud, ``local_wire_bytes_*`` on the site) after the burst,
and the WAN bytes per burst message (``burst_wire_bytes_per_msg``). Prints figures and writes
``bench/results/mesh.json``.

    .venv/bin/python bench/mesh.py            # 5 s partition
    .venv/bin/python bench/mesh.py --full     # 60 s partition

Goals (issue 13): one hop <= 2x direct p50 on both cloud ends; burst and drain at least the
Mosquitto bridge's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import logging

from mesh_ab import ab
from mesh_measure import bench_end
from mesh_report import report, write_results

logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt warns on every pipelined publish


async def main() -> None:
    """Run both ends and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="60 s partition")
    parser.add_argument("--throughput-msgs", type=int, default=5000)
    parser.add_argument("--partition", type=float, default=None, help="override seconds")
    parser.add_argument(
        "--only", choices=["amqtt", "mosquitto", "links-only", "peer"], default=None
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="A/B: a tree (e.g. `git archive` of a commit) whose broker/src runs the link in "
        "alternate rounds beside this one's; writes bench/results/mesh-ab.json",
    )
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (with --base)")
    args = parser.parse_args()
    partition = args.partition or (60.0 if args.full else 5.0)
    if args.base is not None:
        await ab(args.base, args.only or "links-only", args.rounds, partition, args.throughput_msgs)
        return
    results: dict[str, Any] = {
        "partition_s": partition,
        "load_average": os.getloadavg(),
        "ends": {},
    }
    kinds = [args.only] if args.only else ["peer", "amqtt", "mosquitto", "links-only"]
    peer: dict[str, Any] | None = None
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix=f"fm-bench-{kind}-") as tmp:
            res = await bench_end(kind, Path(tmp), partition, args.throughput_msgs)
        report("mosquitto's own bridge (peer)" if kind == "peer" else kind, res)
        if kind == "peer":
            results["peer"] = peer = res
        else:
            results["ends"][kind] = res
    for res in results["ends"].values():
        if peer is not None:
            res["peer_hop_ratio"] = peer["hop_ratio"]
            res["peer_burst_msgs_per_s"] = peer["burst_msgs_per_s"]
            res["peer_drain_msgs_per_s"] = peer["drain_msgs_per_s"]
    if results["ends"]:
        results["median_added_p50_ms"] = statistics.median(
            r["added_p50_ms"] for r in results["ends"].values()
        )
    results["load_average_end"] = os.getloadavg()
    print(f"load average at the start {results['load_average']}, at the end", os.getloadavg())
    print(f"wrote {write_results(results)}")


if __name__ == "__main__":
    asyncio.run(main())
