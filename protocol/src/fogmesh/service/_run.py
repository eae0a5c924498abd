"""Run a service's main coroutine until SIGTERM or SIGINT, then cancel it and wait for it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["run_until_signalled", "serve"]


async def run_until_signalled(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main``; on SIGTERM / SIGINT cancel it and await its cleanup."""
    task = asyncio.create_task(main, name="fogmesh.service.main")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def serve(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """The body of every service's ``main()``: run until signalled, exit cleanly."""
    asyncio.run(run_until_signalled(main()))
