"""One socket write per pass of the event loop for each connection of the embedded broker.

amqtt writes every packet with its own ``transport.write``: a ``send`` system call for each
PUBACK to a publisher and each PUBLISH to a subscriber, the largest single cost in a profile
of a burst through the site broker. :class:`PassWriter` keeps what a connection's handlers
write during one pass and hands it to the transport as one buffer when the pass ends
(``call_soon``), in the order written. A buffer past :data:`HOLD_LIMIT` is written at once, so
the transport's own flow control (``drain``) still bounds what waits. Acknowledgements are not
sent earlier than amqtt sent them: a PUBACK is written, as before, only after the journal
commit; it now leaves with the others of its pass.
"""

from __future__ import annotations

import asyncio

from amqtt.adapters import StreamWriterAdapter

__all__ = ["HOLD_LIMIT", "PassWriter"]

HOLD_LIMIT = 64 * 1024
"""Bytes a connection holds back within one pass before writing them at once."""


class PassWriter(StreamWriterAdapter):  # type: ignore[misc]
    """amqtt's stream writer adapter, writing a pass's packets in one ``transport.write``."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        """Wrap ``writer`` (the connection's asyncio stream writer)."""
        super().__init__(writer)
        self._held: list[bytes] = []
        self._size = 0
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        """Hold ``data`` until the pass ends (or write all held at once past the limit)."""
        if self.is_closed:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)
        self._size += len(data)
        if self._size >= HOLD_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Hand everything held to the transport, in order (a closed transport drops it)."""
        if not self._held:
            return
        held, self._held, self._size = self._held, [], 0
        if self._writer.transport.is_closing():
            return
        self._writer.write(held[0] if len(held) == 1 else b"".join(held))

    async def drain(self) -> None:
        """Wait while the transport's buffer is over its high-water mark (amqtt's drain)."""
        if self._size >= HOLD_LIMIT:
            self.flush()
        await super().drain()

    async def close(self) -> None:
        """Write what is held, then close as amqtt does."""
        if not self.is_closed:
            self.flush()
        await super().close()
