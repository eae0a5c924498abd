"""A subscription's queue of deliveries: unbounded, first in first out, one reader.

What :class:`asyncio.Queue` does for the one worker that reads it, without what that worker
never uses (a bound, ``join`` and its event, several getters): a message's hop from the
receive loop to its worker costs a deque append and, when the worker waits, one future.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Items in the order they were put; :meth:`get` waits for one (a single reader)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def first(self) -> T | None:
        """The oldest item, left in place (None: empty)."""
        items = self._items
        return items[0] if items else None

    def put_nowait(self, item: T) -> None:
        """Append ``item`` and wake the reader if it waits."""
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        """The oldest item, waiting for one; a cancelled wait takes nothing out."""
        items = self._items
        while not items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return items.popleft()
