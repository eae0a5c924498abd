"""The idle memory of ``bench/agent.py`` (``rss_idle_mb``): fresh agents per runtime
configuration, each started as the shipped unit starts it and without the unit's settings, of
this tree and of a baseline tree in turn; VmRSS once converged on an empty desired state and
``FOGMESH_BENCH_IDLE_S`` later; the medians and the section of the results they make."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

from agent_spawn import (
    UNIT,
    rss_mb,
    settings_file,
    spawn_agent,
    start_mosquitto,
    stop_agent,
    tree_commit,
    tree_env,
    unit_environment,
    wait_actual,
)

from fogmesh.bus import Bus, BusConfig, MessageContext
from fogmesh.protocol import ActualState, DesiredState, topics

__all__ = [
    "IDLE_WINDOW_S",
    "RUNTIME_CONFIGS",
    "STARTS",
    "Idle",
    "idle_by_config",
    "idle_rss",
    "rss_idle_section",
    "rss_only",
]

IDLE_WINDOW_S = float(os.environ.get("FOGMESH_BENCH_IDLE_S", "60"))
RUNTIME_CONFIGS = {"docker": [], "native": ["--runtimes", "native"]}  # name -> agent flags
STARTS = ("unit", "plain")
"""How each idle agent is started: with the unit's environment, and without it."""


async def idle_rss(
    bus: Bus,
    node: str,
    port: int,
    work: Path,
    label: str,
    *,
    config: str,
    tree: str = "",
    start: str = "plain",
) -> dict[str, float]:
    """VmRSS (MB) of a fresh agent of ``tree`` with the runtimes of ``config``, started the
    ``start`` way (:data:`STARTS`), converged on an empty desired state: 2 s after
    (``after_start``) and ``IDLE_WINDOW_S`` after that."""
    actuals: list[ActualState] = []

    async def on_actual(msg: ActualState, _ctx: MessageContext) -> None:
        actuals.append(msg)

    bus.subscribe(topics.node(node, "actual"), ActualState, on_actual)
    env = tree_env(tree, start)
    flags = RUNTIME_CONFIGS[config]
    if start == "unit":
        flags = [*flags, "--config", str(settings_file(work, node, port))]
    agent = spawn_agent(node, port, work, label, extra=flags, env=env)
    try:
        await asyncio.sleep(3)
        desired = topics.node(node, "desired")
        await bus.publish(desired, DesiredState(node=node, generation=0), retain=True)
        await wait_actual(actuals, 0, 0)
        await asyncio.sleep(2)
        after_start = rss_mb(agent.pid)
        await asyncio.sleep(IDLE_WINDOW_S)
        after_idle = rss_mb(agent.pid)
        await bus.publish_raw(desired, b"", retain=True)
        return {"after_start": round(after_start, 1), "after_idle": round(after_idle, 1)}
    finally:
        stop_agent(agent)


Idle = dict[str, dict[str, dict[str, dict[str, Any]]]]
"""tree ("now", "baseline") -> start (:data:`STARTS`) -> runtime configuration -> figures."""


async def idle_by_config(
    bus: Bus, node: str, port: int, work: Path, label: str, *, trees: dict[str, str], repeat: int
) -> Idle:
    """``idle_rss`` of each tree's agent (``{"now": tree, "baseline": tree}``, "" for this
    checkout) per runtime configuration and way of starting it, ``repeat`` agents each,
    interleaved so that every tree sees the same machine load; the medians with every run."""
    runs: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {w: {} for w in trees}
    for i in range(repeat):
        for config in RUNTIME_CONFIGS:
            for which, tree in trees.items():
                for start in STARTS:
                    one = await idle_rss(
                        bus,
                        f"{node}{config[0]}{which[0]}{start[0]}{i}",
                        port,
                        work,
                        label,
                        config=config,
                        tree=tree,
                        start=start,
                    )
                    runs[which].setdefault(start, {}).setdefault(config, []).append(one)
    return {
        which: {
            start: {
                config: {
                    "after_start": round(statistics.median(r["after_start"] for r in rs), 1),
                    "after_idle": round(statistics.median(r["after_idle"] for r in rs), 1),
                    "runs": rs,
                }
                for config, rs in by_config.items()
            }
            for start, by_config in by_start.items()
        }
        for which, by_start in runs.items()
    }


def _figures(idle: dict[str, dict[str, dict[str, Any]]], tree: str) -> dict[str, Any]:
    """One tree's idle figures: as its unit starts it (the figure) and without the unit's
    environment and settings file, each configuration's median."""
    return {
        **{config: idle["unit"][config]["after_idle"] for config in RUNTIME_CONFIGS},
        "unit_environment": unit_environment(tree),
        "without_unit": {c: idle["plain"][c]["after_idle"] for c in RUNTIME_CONFIGS},
        "commit": tree_commit(tree),
        "detail": idle,
    }


def rss_idle_section(idle: Idle, trees: dict[str, str], load_start: list[float]) -> dict[str, Any]:
    """The ``rss_idle_mb`` section of the results."""
    section: dict[str, Any] = {
        "goal_mb": {"docker": 40, "native": 32},
        "idle_s": IDLE_WINDOW_S,
        "started_as": f"{UNIT}: its Environment= settings, --config agent.yaml (JSON syntax);"
        " and without them",
        **_figures(idle["now"], trees["now"]),
    }
    if "baseline" in trees:
        section["baseline"] = _figures(idle["baseline"], trees["baseline"])
    section["load_average_start"] = load_start
    section["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return section


async def rss_only(trees: dict[str, str], repeat: int) -> dict[str, Any]:
    """``rss_idle_mb`` alone: the idle agents against one Mosquitto."""
    load_start = [round(x, 2) for x in os.getloadavg()]
    run = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="fmbench-"))
    mosq, mport = start_mosquitto(work)
    try:
        await asyncio.sleep(0.5)
        cfg = BusConfig(
            port=mport, client_id=f"bench{run}", username=f"bench{run}", clean_session=True
        )
        async with Bus(cfg) as bus:
            await bus.wait_connected(timeout=20)
            idle = await idle_by_config(
                bus, f"bench-{run}", mport, work, f"fmbench={run}", trees=trees, repeat=repeat
            )
    finally:
        mosq.terminate()
        mosq.wait(timeout=10)
    return rss_idle_section(idle, trees, load_start)
