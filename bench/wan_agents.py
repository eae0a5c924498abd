"""The WAN bench's agents' process (``wan.py --agents SPEC``): every agent of a site in one
process, real :class:`fogmesh.agent.service.Agent` objects whose node usage is a sampled edge
box's (steady when idle, busy on the sample app's node)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from pathlib import Path
from typing import Any

__all__ = ["run_agents"]


def _usage(cpu: tuple[float, float], memory_mb: tuple[int, int], load: tuple[float, float]) -> Any:
    """An edge box's usage sample: CPU and load drawn from their ranges, memory in ``memory_mb``
    of 2 GB, the disk moving by a few MB."""
    from fogmesh.protocol import Usage

    mb = 1 << 20
    return Usage(
        cpu_percent=round(random.uniform(*cpu), 1),
        memory_used_bytes=memory_mb[0] * mb + random.randrange((memory_mb[1] - memory_mb[0]) * mb),
        memory_total_bytes=2048 * mb,
        disk_used_bytes=9000 * mb + random.randrange(4 * mb),
        disk_total_bytes=32000 * mb,
        load1=round(random.uniform(*load), 2),
    )


def _steady_usage(_state_dir: Path) -> Any:
    """An idle edge box's usage: CPU 1-3 %, memory and disk moving by a few MB."""
    return _usage((1.0, 3.0), (600, 604), (0.0, 0.2))


def _busy_usage(_state_dir: Path) -> Any:
    """A busy edge box's usage (the node running the sample app): CPU anywhere in 20-80 % and
    memory in 1,000-1,400 MB of 2 GB at each sample, so nearly every sample is news."""
    return _usage((20.0, 80.0), (1000, 1400), (0.5, 2.0))


async def run_agents(spec: Path) -> None:
    """Every agent of ``spec`` (a list of agent configs) in this process, until SIGTERM."""
    from fogmesh.agent import service
    from fogmesh.agent.config import AgentConfig
    from fogmesh.service import configure_logging

    data = json.loads(await asyncio.to_thread(spec.read_text))
    busy = {str(Path(d)) for d in data.get("busy", [])}

    def usage(state_dir: Path) -> Any:
        return (_busy_usage if str(state_dir) in busy else _steady_usage)(state_dir)

    service.sample_usage = usage  # type: ignore[attr-defined]
    stagger = float(data["stagger_s"])
    configs = [AgentConfig.model_validate(c) for c in data["agents"]]
    configure_logging(configs[0].log_level)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def one(n: int, config: AgentConfig) -> None:
        await asyncio.sleep(n * stagger / len(configs))  # nodes that did not start together
        agent = service.Agent(config)
        if data.get("usage_at_once"):  # the baseline: usage news at the first tick with it
            agent.beats.usage_min_s = 0.0
        await agent.run()

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(n, c)) for n, c in enumerate(configs)]
        await stop.wait()
        for task in tasks:
            task.cancel()
