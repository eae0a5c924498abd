"""The node agent: deploy latency, memory, idle WAN traffic.

* ``deploy``: time from publishing a desired state (one more docker workload) to Docker's
  ``start`` event for its container, against raw aiodocker ``create`` + ``start`` of the same
  image, command and network in the same run, timed the same way (call -> ``start`` event).
  Goal: agent median <= 1.2 x raw median + 15 ms.
* ``rss``: resident memory of the agent process, idle (no workloads) and with 20 running
  workloads; ``rss_idle_mb`` idle for both runtime configurations, each in its own process:
  ``docker`` (the default runtimes, Docker configured; goal <= 40 MB) and ``native`` (only the
  native runtime, ``--runtimes native``; goal <= 32 MB): VmRSS once the agent has converged on
  an empty desired state (``after_start``) and ``FOGMESH_BENCH_IDLE_S`` later (the figure).
  Each is measured twice: started as the shipped unit starts it (the ``Environment=`` settings
  of ``deploy/systemd/fogmesh-agent.service``, e.g. ``MALLOC_ARENA_MAX=1``, and ``--config``
  with an ``agent.yaml`` in JSON syntax, as ``deploy/agent/install.sh`` writes it: the figure)
  and without either, every setting a flag (``without_unit``); both are printed
  and kept.
  With ``--base <tree>`` (or ``FOGMESH_BENCH_BASE``; a work tree of an earlier commit, e.g.
  ``git worktree add /tmp/base HEAD~1``) the same is measured, interleaved, for the agent of
  that tree (its ``protocol/src`` and ``services/node-agent/src`` first on ``PYTHONPATH``):
  ``rss_idle_mb.baseline``; ``--tree <tree>`` measures another tree's agent as "now" (by
  default this checkout's, as installed). ``--repeat N`` starts N agents per configuration and
  tree (the median is the figure); ``--rss-only`` measures ``rss_idle_mb`` alone (no Docker
  deploy, no WAN window) and rewrites only that section of the results.
* ``wan``: bytes the agent sends to the broker (and receives) over an idle window, counted on
  the wire by a TCP proxy between agent and broker (so MQTT framing, keep-alives and PUBACKs
  count), extrapolated to one hour. Default agent settings (heartbeat every 5 s).

Needs dockerd, mosquitto and the busybox test image (built if missing).
Run: ``.venv/bin/python bench/agent.py [--rss-only] [--base TREE] [--tree TREE] [--repeat N]``
(writes ``bench/results/agent.json``; ``--help`` for the options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiodocker
from _common import REPO
from agent_deploy import MANY, StartWatcher, deploy_section, deploy_trials, spec
from agent_rss import IDLE_WINDOW_S, idle_by_config, rss_idle_section, rss_only
from agent_spawn import rss_mb, spawn_agent, start_mosquitto, stop_agent, wait_actual
from agent_wan import CountingProxy, wan_section

from fogmesh.bus import Bus, BusConfig, MessageContext
from fogmesh.protocol import ActualState, DesiredState, topics
from tests.support.images import build_busybox_image

__all__ = ["RESULTS", "main", "parse_args"]

RESULTS = REPO / "bench" / "results" / "agent.json"


async def main(trees: dict[str, str], repeat: int) -> dict[str, Any]:
    load_start = [round(x, 2) for x in os.getloadavg()]
    build_busybox_image()
    run = uuid.uuid4().hex[:8]
    key, value = "fmbench", run
    label = f"{key}={value}"
    node = f"bench-{run}"
    tenant = f"bt{run}"
    work = Path(tempfile.mkdtemp(prefix="fmbench-"))
    mosq, mport = start_mosquitto(work)
    proxy = CountingProxy(mport)
    await proxy.start()
    docker = aiodocker.Docker()
    watcher = StartWatcher(docker, label)
    await watcher.start()
    agent: subprocess.Popen[bytes] | None = None
    results: dict[str, Any] = {}
    try:
        await asyncio.sleep(0.5)
        agent = spawn_agent(node, proxy.port, work, label)
        cfg = BusConfig(
            port=mport, client_id=f"bench{run}", username=f"bench{run}", clean_session=True
        )
        async with Bus(cfg) as bus:
            await bus.wait_connected(timeout=20)
            actuals: list[ActualState] = []

            async def on_actual(msg: ActualState, _ctx: MessageContext) -> None:
                actuals.append(msg)

            bus.subscribe(topics.node(node, "actual"), ActualState, on_actual)
            desired_topic = topics.node(node, "desired")
            # idle: let it settle, then measure RSS and idle WAN bytes
            await asyncio.sleep(3)
            await bus.publish(desired_topic, DesiredState(node=node, generation=0), retain=True)
            await wait_actual(actuals, 0, 0)
            await asyncio.sleep(2)
            rss_idle = rss_mb(agent.pid)
            up0, down0 = proxy.up, proxy.down
            await asyncio.sleep(IDLE_WINDOW_S)
            idle_up, idle_down = proxy.up - up0, proxy.down - down0
            rss_idle_after = rss_mb(agent.pid)
            # idle RSS per runtime configuration, this tree's agent and the baseline's in turn
            idle = await idle_by_config(bus, node, mport, work, label, trees=trees, repeat=repeat)

            # warm-up, then raw and agent deploys interleaved
            raw, agent_times, specs, gen = await deploy_trials(
                bus, docker, watcher, actuals, node=node, tenant=tenant, key=key, value=value
            )

            # up to MANY workloads
            gen += 1
            specs = [*specs, *(spec(f"m{i}", tenant) for i in range(MANY - len(specs)))]
            await bus.publish(
                desired_topic, DesiredState(node=node, generation=gen, workloads=specs), retain=True
            )
            await wait_actual(actuals, gen, MANY)
            await asyncio.sleep(12)  # a few heartbeats with per-workload usage sampling
            rss_many = rss_mb(agent.pid)
            up1, down1 = proxy.up, proxy.down
            window_many = min(IDLE_WINDOW_S, 30.0)
            await asyncio.sleep(window_many)
            many_up, many_down = proxy.up - up1, proxy.down - down1

            # clear
            gen += 1
            await bus.publish(desired_topic, DesiredState(node=node, generation=gen), retain=True)
            await wait_actual(actuals, gen, 0)
            await bus.publish_raw(desired_topic, b"", retain=True)

        results = {
            "deploy": deploy_section(raw, agent_times),
            "rss": {
                "idle_mb": round(rss_idle, 1),
                "idle_after_window_mb": round(rss_idle_after, 1),
                f"with_{MANY}_workloads_mb": round(rss_many, 1),
                "goal_idle_mb": 40,
                "meets_goal": rss_idle <= 40,
            },
            "rss_idle_mb": rss_idle_section(idle, trees, load_start),
            "wan": wan_section(
                IDLE_WINDOW_S, (idle_up, idle_down), window_many, (many_up, many_down)
            ),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
    finally:
        if agent is not None and agent.poll() is None:
            stop_agent(agent)
        await watcher.stop()
        for c in await docker.containers.list(all=True, filters={"label": [label]}):
            with contextlib.suppress(aiodocker.DockerError):
                await c.delete(force=True)
        with contextlib.suppress(aiodocker.DockerError):
            net = await docker.networks.get(f"fm-{tenant}")
            await net.delete()
        await docker.close()
        await proxy.stop()
        mosq.terminate()
        mosq.wait(timeout=10)
    return results


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rss-only", action="store_true", help="measure rss_idle_mb alone")
    p.add_argument(
        "--base",
        default=os.environ.get("FOGMESH_BENCH_BASE", ""),
        help="work tree of the baseline agent (env FOGMESH_BENCH_BASE; none by default)",
    )
    p.add_argument("--tree", default="", help="work tree of the agent measured as now")
    p.add_argument("--repeat", type=int, default=1, help="agents per configuration and tree")
    return p.parse_args()


if __name__ == "__main__":
    args = parse_args()
    trees = {"now": args.tree, **({"baseline": args.base} if args.base else {})}
    if args.rss_only:
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        out = {**previous, "rss_idle_mb": asyncio.run(rss_only(trees, args.repeat))}
    else:
        out = asyncio.run(main(trees, args.repeat))
    text = json.dumps(out, indent=2)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")
