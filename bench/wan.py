"""What an idle site sends over its WAN link: bytes on the link's socket, both ways, per node-month.

Each configuration is a site of its own: a cloud and a site broker (``fogmesh-broker run``, the
embedded broker) joined by a bridge link with the rules ``fogmesh up`` gives a site's WAN link
(``fogmesh.cli.fleet.plan.link_rules``), and the site's node agents. The figure is the link's
own count of the bytes on its remote sockets, both ways (``LinkStatus.wire_bytes_out`` /
``wire_bytes_in``, MQTT packets whole). The link's remote side also dials the cloud through a
TCP relay in this process (``tests/support/relay.py``) that counts the same bytes (the
cross-check, and the figure when the link has no counters) and parses the MQTT packets so each
byte is charged to the ``fm/v1`` tree its PUBLISH names (``mqtt`` for pings, acks, connects).

The agents are the real :class:`fogmesh.agent.service.Agent`, several per process (one process
per configuration), with the native runtime; their workloads are tiny ``sleep`` processes placed
by a retained desired state published on the cloud, as the scheduler does. Only their node usage
is steady (an idle edge box: CPU 1-3 %, memory and disk moving by a few MB), since this 2-core
machine's own usage is the other processes' load, not the node's; each workload's usage is
sampled for real. With ``--sample-app`` configurations the first node of the site also runs the
paper's sample app (sensor at 1 Hz and convolver, native), whose own data crosses the link, and
reports a busy box's usage (CPU 20-80 %, memory 1.0-1.4 of 2 GB: nearly every sample is news);
they run the agents' defaults, the same with usage news at every sampling tick (the design
before the usage wait, ``usage-at-once``: the baseline) and the previous design. What crosses
besides the app's data is split by the relay.

With ``--cloud`` the cloud tier runs as ``fogmesh up`` runs it (``wan_cloud.CloudRun``: the
fleet plan's brokers, accounts, service configs and link rules; registry, scheduler, migrators,
artefact store and caches), idle nodes on both sites, once with today's link rules and once
with the previous design's (every tree but requests and replies both ways: the baseline).
``--merge`` writes the run's figures into ``bench/results/wan.json`` beside what it holds.

Configurations: site size 1 or 10 nodes, 0 or 20 idle workloads per node, each once with the
agent's defaults (heartbeats on news, ``heartbeat_on_change: true``) and once as the previous
design (``heartbeat_on_change: false``: every 5 s with every workload's status, the baseline),
all at once; a site's agents start spread over ``--stagger`` (300 s: nodes not switched on
together). Once every workload runs, the link's queue is empty and a settling pause is over, the
counters are read, and again after ``--duration`` seconds; the difference is extrapolated to a
30-day month per node.

    .venv/bin/python bench/wan.py --sample-app  # 1200 s per configuration, all in parallel
    .venv/bin/python bench/wan.py --cloud --sample-app --only cloud app --duration 600 --merge
    .venv/bin/python bench/wan.py --quick       # 90 s, agents started within 30 s, for trying
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import load_average, read_result, write_result
from wan_agents import run_agents
from wan_measure import measure
from wan_report import merged, payload, show
from wan_site import configurations


async def main_async(args: argparse.Namespace) -> None:
    configs = configurations(sample_app=args.sample_app, cloud=args.cloud, only=args.only)
    base = Path(tempfile.mkdtemp(prefix="fm-wan-"))
    load_before = load_average()
    try:
        done = await asyncio.gather(*(measure(c, base, args) for c in configs))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    run: dict[str, Any] = {
        "seconds_per_configuration": args.duration,
        "agents_started_within_s": args.stagger,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results = {r["key"]: {**r, "run": run} for r in done}
    result = payload(results, run, has_app=any(c.sample_app for c in configs))
    show(result, args.duration, load_before)
    name = "wan-only" if args.only and not args.merge else "wan"
    if args.merge:
        result = merged(read_result("wan"), result)
    print(f"written to {write_result(name, result)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="90 s per configuration")
    parser.add_argument("--duration", type=float, default=1200.0, help="seconds measured")
    parser.add_argument("--stagger", type=float, default=300.0, help="a site's agents start within")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds before measuring")
    parser.add_argument("--sample-app", action="store_true", help="also with the sample app")
    parser.add_argument("--cloud", action="store_true", help="also with fogmesh up's cloud tier")
    parser.add_argument(
        "--merge", action="store_true", help="into bench/results/wan.json, keeping what it has"
    )
    parser.add_argument("--only", nargs="*", help="configurations whose key has one of these")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    parser.add_argument("--agents", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agents is not None:
        asyncio.run(run_agents(args.agents))
        return
    if args.quick:
        args.duration, args.stagger = min(args.duration, 90.0), min(args.stagger, 30.0)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
