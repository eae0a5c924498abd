"""A duty one instance of a service does at a time, held by a lease (:class:`LeaseKeeper`):
the scheduler's, the migrator's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fogmesh.bus import Bus
from fogmesh.service._lease import LeaseKeeper
from fogmesh.service._settings import LeaderSettings

__all__ = ["LeaderDuty", "LeaderService"]


class LeaderDuty:
    """The lease of ``duty`` for one service instance: built and installed once its bus is up,
    then renewed or awaited by a task in the service's TaskGroup."""

    def __init__(
        self, duty: str, settings: LeaderSettings, on_gain: Callable[[int], Awaitable[None]]
    ) -> None:
        self.duty = duty
        self.settings = settings
        self.on_gain = on_gain
        self.lease: LeaseKeeper | None = None

    @property
    def leader(self) -> bool:
        """Whether this instance holds the lease now."""
        return self.lease is not None and self.lease.leader

    def install(self, bus: Bus) -> LeaseKeeper:
        """Build the lease keeper on ``bus`` and subscribe it to the lease record."""
        s = self.settings
        self.lease = LeaseKeeper(
            bus, s.client_id, duty=self.duty, ttl=s.lease_ttl_s, settle=s.lease_settle_s,
            on_gain=self.on_gain,
        )  # fmt: skip
        self.lease.install()
        return self.lease

    async def run(
        self,
        bus: Bus,
        attach: Callable[[Bus], None],
        **loops: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        """Install the lease, ``attach`` the service's subscriptions, then run the lease loop and
        the service's ``loops`` (task ``{duty}.{name}``) in one TaskGroup until cancelled;
        leaving cancels every loop and waits for it."""
        lease = self.install(bus)
        attach(bus)
        async with asyncio.TaskGroup() as group:
            group.create_task(lease.run(), name=f"{self.duty}.lease")
            for name, loop in loops.items():
                group.create_task(loop(), name=f"{self.duty}.{name}")


class LeaderService:
    """Base of a service whose instances share one duty by lease: it sets ``duty``."""

    duty: LeaderDuty

    @property
    def leader(self) -> bool:
        """Whether this instance holds the lease now."""
        return self.duty.leader

    @property
    def lease(self) -> LeaseKeeper | None:
        """The lease keeper, once the service's bus is up."""
        return self.duty.lease
