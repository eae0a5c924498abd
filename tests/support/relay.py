"""A TCP relay that counts the bytes it passes each way.

It accepts on a port of its own (or on a listening socket it is given, e.g. one made inside a
network namespace) and forwards each connection to a target port on 127.0.0.1. It uses
back-pressure (it stops reading from one side while the other side's buffers are full) and,
when one side of a connection goes quiet, keeps the other open and quiet, as a router would.
``up`` counts the bytes towards the target, ``down`` those from it; a ``watch`` factory may see
each connection's stream per direction (e.g. to split it into MQTT packets). With a ``lag`` the
target answers late: what it sends is delivered that many seconds after it came, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

from tests.support.brokers import free_port

__all__ = ["CountingRelay", "Watch"]

Watch = Callable[[str], Callable[[bytes], None]]
"""Called with ``"up"`` or ``"down"`` once per connection and direction; returns what is fed
every chunk that direction carries."""


class CountingRelay:
    """A relay from ``port`` (a free one unless given, or the listening ``sock``) on 127.0.0.1
    to ``target``: ``async with`` it, or :meth:`start` and :meth:`close` it."""

    def __init__(
        self,
        target: int,
        *,
        port: int | None = None,
        sock: socket.socket | None = None,
        watch: Watch | None = None,
        lag: float = 0.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.target = target
        self.sock = sock
        self.port = sock.getsockname()[1] if sock is not None else port or free_port()
        self.watch = watch
        self.lag = lag
        """Seconds the bytes from the target are held back (that way without back-pressure)."""
        self.connect_timeout = connect_timeout
        self.up = 0
        """Bytes towards the target."""
        self.down = 0
        """Bytes from the target."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> CountingRelay:
        if self.sock is not None:
            self._server = await asyncio.start_server(self._serve, sock=self.sock)
        else:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self._server is not None, "start() first"
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting and end every relayed connection."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> CountingRelay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                far_r, far_w = await asyncio.open_connection("127.0.0.1", self.target)
        except (OSError, TimeoutError):
            writer.close()
            return
        self._writers += [writer, far_w]
        pipes = [
            asyncio.create_task(self._pipe(reader, far_w, "up")),
            asyncio.create_task(self._pipe(far_r, writer, "down")),
        ]
        self._tasks.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        self._tasks.difference_update(pipes)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: str
    ) -> None:
        feed = self.watch(way) if self.watch is not None else None
        held: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        lagged = asyncio.create_task(_deliver(held, writer)) if way == "down" and self.lag else None
        try:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await reader.read(65_536):
                    if way == "up":
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    if feed is not None:
                        feed(data)
                    if lagged is not None:
                        held.put_nowait((time.monotonic() + self.lag, data))
                        continue
                    writer.write(data)
                    await writer.drain()  # back-pressure: a stalled far side stops the reads
            if lagged is not None:
                held.put_nowait(None)  # what is held still goes, then the close
                await asyncio.gather(lagged, return_exceptions=True)
        finally:
            if lagged is not None:
                lagged.cancel()
            with contextlib.suppress(OSError):
                writer.close()


async def _deliver(
    held: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
) -> None:
    """Write each held chunk at its due time, in order, until the ``None`` that ends them."""
    with contextlib.suppress(OSError):
        while (item := await held.get()) is not None:
            due, data = item
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()
