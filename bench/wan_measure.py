"""One configuration of the WAN bench, measured: started, settled once every workload runs and
the start's burst has crossed, its counters read before and after ``--duration`` seconds, the
difference as bytes per node-month."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from wan_cloud import CloudRun
from wan_run import Run
from wan_site import Config

__all__ = ["measure"]

MONTH_S = 30 * 24 * 3600


async def _counters(run: Run) -> tuple[dict[str, Any], tuple[int, int], float, bool]:
    """The relay's tally, the link's own counters and when, at one moment: the link's status on
    the site broker follows its counters within 5 s, so it is read until neither it nor the
    relay's counts moved over 6 s, for 30 s at most (then False: e.g. the app's data flows)."""
    deadline = time.monotonic() + 30
    before: tuple[tuple[int, int], tuple[int, int]] | None = None
    while True:
        snap, at = run.relay.snapshot(), time.monotonic()
        wire = await asyncio.to_thread(run.link_wire)
        now = (wire, (snap["up"], snap["down"]))
        # the link's counters and the relay's both unchanged over 6 s: the status is current
        caught = now == before
        if caught or time.monotonic() > deadline:
            return snap, wire, at, caught
        before = now
        await asyncio.sleep(6)


async def measure(cfg: Config, base: Path, args: argparse.Namespace) -> dict[str, Any]:
    run = (CloudRun if cfg.cloud else Run)(cfg, base, args.stagger, keep=args.keep)
    duration, settle = args.duration, args.settle
    try:
        await run.start()
        want = cfg.nodes * cfg.workloads + (2 if cfg.sample_app else 0)
        deadline = time.monotonic() + 600
        while (got := await asyncio.to_thread(run.running)) < want or (
            run.relay.tally.hellos < run.hellos
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cfg.key}: {got} of {want} workloads running")
            await asyncio.sleep(5)
        # the start's burst (every workload's events and actual states) crosses first: the
        # link's queue is empty and no event or actual state crossed for ``settle`` seconds
        while (
            await asyncio.to_thread(run.link_queue) != 0
            or time.monotonic() - run.relay.tally.startup_at < settle
        ):
            if time.monotonic() > deadline + 600:
                raise RuntimeError(f"{cfg.key}: the start's burst did not end")
            await asyncio.sleep(5)
        start, wire0, t0, caught0 = await _counters(run)
        await asyncio.sleep(duration)
        end, wire1, t1, caught1 = await _counters(run)
    finally:
        run.stop()
        await run.relay.close()
    seconds = t1 - t0
    relayed = end["up"] - start["up"] + end["down"] - start["down"]
    counted = min(wire0 + wire1) >= 0
    # the link's own counters when it has them (LinkStatus.wire_bytes_*), else the relay's
    both = wire1[0] - wire0[0] + wire1[1] - wire0[1] if counted else relayed
    trees = {k: v - start["trees"].get(k, 0) for k, v in end["trees"].items()}
    packets = {k: v - start["packets"].get(k, 0) for k, v in end["packets"].items()}
    scale = MONTH_S / seconds / cfg.nodes
    return {
        "key": cfg.key,
        "seconds": round(seconds, 1),
        "bytes_up": end["up"] - start["up"],
        "bytes_down": end["down"] - start["down"],
        "agent_reconnects": end["hellos"] - start["hellos"],
        "counted_by": "link" if counted else "relay",
        "link_counters_caught_up": [caught0, caught1],
        "link_wire_bytes_out": wire1[0] - wire0[0] if counted else None,
        "link_wire_bytes_in": wire1[1] - wire0[1] if counted else None,
        "bytes_per_node_month": round(both * scale),
        "relay_bytes_per_node_month": round(relayed * scale),
        # by the relay's split (the link's counters lag it by up to 5 s of traffic, and with the
        # app's data flowing that lag alone is about 1 % of the data)
        "without_app_data_per_node_month": round(
            sum(v for k, v in trees.items() if not k.endswith(":data")) * scale
        ),
        "by_tree_per_node_month": {k: round(v * scale) for k, v in sorted(trees.items()) if v},
        "packets": {k: v for k, v in sorted(packets.items()) if v},
    }
