"""The agent's heartbeat loop (docs/agent.md, "Heartbeats"): it samples the node's usage, and
the workloads' when configured, every ``heartbeat_interval_s``, checks for devices that came or
went, and sends a heartbeat when :class:`~fogmesh.agent.heartbeat.BeatPolicy` says there is
news or the longest wait is over; never queued while the bus is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from fogmesh.agent.config import AgentConfig
from fogmesh.agent.heartbeat import BeatPolicy
from fogmesh.agent.runtime.base import InstanceState, Runtime
from fogmesh.agent.runtime.errors import RuntimeFailure
from fogmesh.agent.service_devices import DeviceWatch
from fogmesh.bus import Bus
from fogmesh.protocol import Heartbeat, NodeChannel, RuntimeKind, Usage, topics

__all__ = ["HeartbeatLoop"]

log = structlog.get_logger("fogmesh.agent")


class HeartbeatLoop(DeviceWatch):
    """Part of :class:`~fogmesh.agent.service.Agent`: samples usage and sends heartbeats (each
    tick first tells of devices that came or went: :class:`DeviceWatch`)."""

    config: AgentConfig  # set by Agent.__init__
    runtimes: dict[RuntimeKind, Runtime]
    beats: BeatPolicy
    _seq: int
    usage: Callable[[], Usage]  # a method of Agent

    async def _heartbeat_loop(self, bus: Bus) -> None:
        """Sample every ``heartbeat_interval_s``; send when :class:`BeatPolicy` says there is
        news, or the longest wait is over (docs/agent.md, "Heartbeats")."""
        assert self.reconciler is not None
        interval = self.config.heartbeat_interval_s
        connects = -1
        while True:
            await asyncio.sleep(interval)
            if not bus.connected:
                continue  # a heartbeat is only news while it is fresh: never queue them
            try:
                if bus.connects != connects:
                    connects = bus.connects
                    self.beats.reset()  # a new session: the first beat carries everything
                await self._rehello_on_device_change(bus)
                beat = await self._heartbeat(interval)
                if beat is None:
                    continue
                payload = beat.model_dump_json(exclude_defaults=True).encode()
                topic = topics.node(self.node, NodeChannel.HEARTBEAT)
                await bus.publish_raw(topic, payload, qos=0, queue=False)
            except Exception:
                log.exception("heartbeat failed")

    async def _heartbeat(self, interval: float) -> Heartbeat | None:
        """This tick's heartbeat, or None when it has no news and is not yet due."""
        assert self.reconciler is not None
        if self.config.workload_usage:
            await self._sample_workloads(timeout=max(interval * 0.8, 0.5))
        usage, statuses, now = self.usage(), self.reconciler.statuses(), time.monotonic()
        decision = self.beats.decide(usage, statuses, now)
        if not decision.send:
            return None
        carried = statuses if decision.workloads else None
        beat = Heartbeat(
            node=self.node,
            seq=self._seq,
            ts=round(time.time(), 3),
            interval_s=self.beats.interval_s,
            usage=_compact(usage),
            workloads=carried,
        )
        self.beats.sent(usage, carried, now)
        self._seq += 1
        return beat

    async def _sample_workloads(self, timeout: float) -> None:
        assert self.reconciler is not None

        async def one(name: str, runtime: Runtime) -> None:
            tracked = self.reconciler.tracked.get(name) if self.reconciler else None
            try:
                use = await runtime.usage(name)
            except RuntimeFailure:
                return
            if tracked is not None:
                tracked.cpu_percent = max(use.cpu_percent, 0.0)
                tracked.memory_bytes = max(use.memory_bytes, 0)

        jobs = []
        for name, tracked in list(self.reconciler.tracked.items()):
            runtime = self.runtimes.get(tracked.spec.runtime)
            if runtime is None:
                continue
            if tracked.machine.phase.value != InstanceState.RUNNING.value:
                tracked.cpu_percent, tracked.memory_bytes = 0.0, 0
                continue
            jobs.append(one(name, runtime))
        if jobs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*jobs)


def _compact(usage: Usage) -> Usage:
    """Usage as the heartbeat carries it: no more digits than anyone reads."""
    return usage.model_copy(
        update={"cpu_percent": round(usage.cpu_percent, 1), "load1": round(usage.load1, 2)}
    )
