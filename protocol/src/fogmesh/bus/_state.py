"""What the parts of one bus share: its configuration, the live connection and its tasks.

The connection loop sets ``client`` while a connection is up and ``ready`` once its
subscriptions are restored and the outbox flushed; publishing, subscriptions, requests and
acknowledgements read them. Every task any part starts runs in the bus's TaskGroup, so closing
the bus cancels them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

import aiomqtt
import structlog

from fogmesh.bus._config import BusConfig

__all__ = ["MAX_BACKGROUND", "BusState", "within"]

log = structlog.get_logger("fogmesh.bus")

MAX_BACKGROUND = 1000
"""Background tasks (on-connect callbacks, late subscribes, refusals) a bus runs at most."""

T = TypeVar("T")


class BusState:
    """One bus's configuration, its current connection and the TaskGroup its tasks run in."""

    __slots__ = ("_background", "client", "config", "group", "ready")

    def __init__(self, config: BusConfig) -> None:
        self.config = config
        self.client: aiomqtt.Client | None = None
        """The live connection, or None between connections."""
        self.ready = asyncio.Event()
        """Set while connected, with subscriptions restored and the outbox flushed."""
        self.group: asyncio.TaskGroup | None = None
        """The bus's TaskGroup while it runs."""
        self._background = 0

    def task_name(self, name: str) -> str:
        """The name a task of this bus goes by (its client id and role)."""
        return f"fogmesh.bus[{self.config.client_id}].{name}"

    def start(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``work`` as one of the bus's own loops (a worker, a flush, the connection)."""
        assert self.group is not None
        return self.group.create_task(work, name=self.task_name(name))

    def spawn(self, work: Coroutine[Any, Any, None], name: str = "background") -> bool:
        """Run ``work`` as a task of the bus's TaskGroup (cancelled when the bus closes).

        A failure is logged, never raised into the group. False (and ``work`` is not run) when
        the bus is not running or already runs ``MAX_BACKGROUND`` such tasks.
        """
        if self.group is None or self._background >= MAX_BACKGROUND:
            work.close()
            return False
        self._background += 1
        self.group.create_task(self._guarded(work), name=self.task_name(name))
        return True

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:  # a background task must never take the bus down
            log.exception("background bus task failed")
        finally:
            self._background -= 1


async def within(seconds: float, operation: Awaitable[T]) -> T:
    """``operation`` (an aiomqtt call given ``timeout=math.inf``), bounded to ``seconds``.

    aiomqtt bounds its waits with ``asyncio.wait_for``, which on Python 3.11 swallows a
    cancellation that arrives just as the awaited future completes: the cancelled task runs on
    and whoever awaits it waits forever (a heartbeat loop cancelled mid-publish, a test's
    teardown). ``asyncio.timeout`` lets every cancellation through.
    """
    async with asyncio.timeout(seconds):
        return await operation
