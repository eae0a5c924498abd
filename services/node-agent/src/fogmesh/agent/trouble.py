"""The node asks: an agent that sees trouble coming requests the migration of its workloads.

The paper's "local framework in the primary edge node predicts the node failure": the agent
judges, every heartbeat interval, whether its state directory's disk is nearly full
(``trouble_disk_percent``) or a runtime fails (it cannot list its instances), and then
publishes :class:`~fogmesh.protocol.migration.NodeTrouble` on ``fm/v1/nodes/{node}/trouble``
(when the trouble starts, when its kind changes, and every ``trouble_repeat_s`` while it
lasts). The migrator moves the node's workloads off (trigger ``node-asks``); the agent itself
moves nothing. The migration contract is imported by the first trouble: a node without any
never loads it (docs/agent.md, "Memory").
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from fogmesh.bus import Bus
from fogmesh.protocol import topics
from fogmesh.protocol.topics import NodeChannel
from fogmesh.protocol.workload import RuntimeKind

if TYPE_CHECKING:
    from fogmesh.protocol.migration import NodeTrouble, TroubleKind

__all__ = ["TroubleWatch"]

log = structlog.get_logger("fogmesh.agent.trouble")


class TroubleWatch:
    """Judges the node's trouble and asks for its workloads to move while it lasts.

    ``runtimes_down`` returns the runtimes that failed their last listing, with why (the
    reconciler's view, so the watch adds no calls of its own to a struggling engine).
    """

    def __init__(
        self,
        node: str,
        state_dir: Path,
        runtimes_down: Callable[[], Mapping[RuntimeKind, str]],
        *,
        disk_percent: float,
        repeat_s: float,
        interval_s: float,
    ) -> None:
        self.node = node
        self.state_dir = state_dir
        self.runtimes_down = runtimes_down
        self.disk_percent = disk_percent
        self.repeat_s = repeat_s
        self.interval_s = interval_s

    def judge(self) -> NodeTrouble | None:
        """The trouble now, if any (the disk first: it takes every runtime down with it)."""
        found = self._found()
        if found is None:
            return None
        from fogmesh.protocol.migration import NodeTrouble, TroubleKind

        kind, detail = found
        return NodeTrouble(node=self.node, kind=TroubleKind[kind], detail=detail)

    def _found(self) -> tuple[str, str] | None:
        """The name of the :class:`TroubleKind` seen now and its detail, if any."""
        usage = shutil.disk_usage(self.state_dir)
        used = 100.0 * (usage.total - usage.free) / usage.total if usage.total else 0.0
        if used >= self.disk_percent:
            detail = f"disk of {self.state_dir} {used:.1f}% full (trouble at {self.disk_percent}%)"
            return "DISK_FULL", detail
        down = self.runtimes_down()
        if down:
            detail = "; ".join(f"{kind.value}: {why}" for kind, why in sorted(down.items()))
            return "RUNTIME_FAILING", detail[:1024]
        return None

    async def run(self, bus: Bus) -> None:
        """Judge every ``interval_s``; ask when trouble starts or changes, then every
        ``repeat_s`` while it lasts. Runs until cancelled."""
        last: tuple[TroubleKind, float] | None = None
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                last = await self._once(bus, last)
            except Exception:  # a failed judgement must not end the agent's TaskGroup
                log.exception("judging the node's trouble failed")

    async def _once(
        self, bus: Bus, last: tuple[TroubleKind, float] | None
    ) -> tuple[TroubleKind, float] | None:
        trouble = await asyncio.to_thread(self.judge)
        now = time.monotonic()
        if trouble is None:
            if last is not None:
                log.info("trouble over", node=self.node)
            return None
        fresh = last is None or last[0] is not trouble.kind or now - last[1] >= self.repeat_s
        if not fresh or not bus.connected:  # an old ask is no news: asked again once back
            return last
        log.warning(
            "trouble coming: asking to move the workloads",
            kind=trouble.kind.value,
            detail=trouble.detail,
        )
        trouble = trouble.model_copy(update={"source": bus.config.client_id})
        await bus.publish(topics.node(self.node, NodeChannel.TROUBLE), trouble, qos=1)
        return (trouble.kind, now)
