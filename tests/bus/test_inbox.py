"""A subscription's inbox: order kept, a cancelled wait takes nothing out, no wake-up lost."""

from __future__ import annotations

import asyncio
import contextlib

from fogmesh.bus._inbox import Inbox


async def test_items_come_out_in_order_and_a_waiting_reader_wakes() -> None:
    inbox: Inbox[int] = Inbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()  # nothing there: it waits
    for item in range(3):
        inbox.put_nowait(item)  # several puts before the reader runs wake it once
    assert await asyncio.wait_for(reader, 5) == 0
    assert [await inbox.get(), await inbox.get()] == [1, 2]
    assert len(inbox) == 0


async def test_a_cancelled_wait_takes_nothing_out() -> None:
    inbox: Inbox[str] = Inbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("a")  # wakes the reader's future ...
    reader.cancel()  # ... and the reader is cancelled before it runs
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    assert len(inbox) == 1
    assert await asyncio.wait_for(inbox.get(), 5) == "a"
    later = asyncio.create_task(inbox.get())  # the next reader still gets woken
    await asyncio.sleep(0)
    inbox.put_nowait("b")
    assert await asyncio.wait_for(later, 5) == "b"
