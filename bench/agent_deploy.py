"""The deploy latency of ``bench/agent.py``: Docker ``start`` events of the bench's containers,
raw aiodocker ``create`` + ``start`` against the agent deploying one more workload of the same
image, command and network (interleaved, each timed from its call to the ``start`` event), and
the ``deploy`` section of the results."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from typing import Any

import aiodocker
from agent_spawn import wait_actual

from fogmesh.bus import Bus
from fogmesh.protocol import ActualState, DesiredState, RuntimeKind, WorkloadSpec, topics
from tests.support.images import BUSYBOX_TAG

__all__ = [
    "COMMAND",
    "MANY",
    "TRIALS",
    "StartWatcher",
    "deploy_section",
    "deploy_trials",
    "raw_once",
    "spec",
]

TRIALS = 7
MANY = 20
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


class StartWatcher:
    """Docker ``start`` events of containers carrying our label, with arrival times."""

    def __init__(self, docker: aiodocker.Docker, label: str) -> None:
        self.docker = docker
        self.label = label
        self.started: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sub = self.docker.events.subscribe(  # type: ignore[no-untyped-call]
            filters={"type": ["container"], "event": ["start"], "label": [self.label]}
        )

        async def loop() -> None:
            while True:
                event = await sub.get()
                if event is None:
                    return
                name = event.get("Actor", {}).get("Attributes", {}).get("name", "")
                self.started[name] = time.perf_counter()
                self.changed.set()

        self._task = asyncio.create_task(loop())
        await asyncio.sleep(0.3)

    async def wait(self, name: str, timeout: float = 60.0) -> float:
        async with asyncio.timeout(timeout):
            while name not in self.started:
                self.changed.clear()
                await self.changed.wait()
        return self.started[name]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def spec(name: str, tenant: str) -> WorkloadSpec:
    return WorkloadSpec(
        name=name,
        tenant=tenant,
        app="bench",
        component=name,
        runtime=RuntimeKind.DOCKER,
        image=BUSYBOX_TAG,
        command=COMMAND,
    )


async def raw_once(
    docker: aiodocker.Docker, watcher: StartWatcher, key: str, value: str, network: str
) -> float:
    """aiodocker create + start, timed from the create call to the start event."""
    name = f"fmbench-raw-{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {
        "Image": BUSYBOX_TAG,
        "Cmd": COMMAND,
        "Labels": {key: value},
        "HostConfig": {"RestartPolicy": {"Name": "no"}, "NetworkMode": network},
    }
    t0 = time.perf_counter()
    container = await docker.containers.create(config, name=name)
    await container.start()
    t1 = await watcher.wait(name)
    return t1 - t0


async def deploy_trials(
    bus: Bus,
    docker: aiodocker.Docker,
    watcher: StartWatcher,
    actuals: list[ActualState],
    *,
    node: str,
    tenant: str,
    key: str,
    value: str,
) -> tuple[list[float], list[float], list[WorkloadSpec], int]:
    """A warm-up workload (the tenant's network and the image in place for both paths), then
    :data:`TRIALS` raw deploys and agent deploys in turn; the raw and the agent's times (s),
    the desired workloads and generation the agent has converged on."""
    desired_topic = topics.node(node, "desired")
    gen = 1
    specs = [spec("warm", tenant)]
    await bus.publish(
        desired_topic, DesiredState(node=node, generation=gen, workloads=specs), retain=True
    )
    await wait_actual(actuals, gen, 1)
    network = f"fm-{tenant}"
    raw: list[float] = []
    agent_times: list[float] = []
    for i in range(TRIALS):  # interleaved, so both see the same machine load
        await asyncio.sleep(0.5)
        raw.append(await raw_once(docker, watcher, key, value, network))
        gen += 1
        specs = [*specs, spec(f"w{i}", tenant)]
        cname = f"fm-{node}-{tenant}-bench-w{i}-0"
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        await bus.publish(
            desired_topic,
            DesiredState(node=node, generation=gen, workloads=specs),
            retain=True,
        )
        t1 = await watcher.wait(cname)
        agent_times.append(t1 - t0)
        await wait_actual(actuals, gen, len(specs))
    return raw, agent_times, specs, gen


def deploy_section(raw: list[float], agent_times: list[float]) -> dict[str, Any]:
    """The ``deploy`` section of the results (goal: agent median <= 1.2 x raw + 15 ms)."""
    raw_med = statistics.median(raw)
    agent_med = statistics.median(agent_times)
    goal = 1.2 * raw_med + 0.015
    return {
        "trials": TRIALS,
        "raw_create_start_ms": [round(t * 1000, 1) for t in raw],
        "agent_publish_to_start_ms": [round(t * 1000, 1) for t in agent_times],
        "raw_median_ms": round(raw_med * 1000, 1),
        "agent_median_ms": round(agent_med * 1000, 1),
        "goal_ms": round(goal * 1000, 1),
        "meets_goal": agent_med <= goal,
    }
