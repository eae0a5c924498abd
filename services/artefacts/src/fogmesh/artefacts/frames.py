"""Binary chunk reads: a request / reply whose answer is a frame (a JSON header, a newline,
the raw bytes) instead of JSON with base64, so a cache's pull costs the WAN the artefact's size
(:class:`~fogmesh.protocol.artefacts.ReadChunk` with ``binary``).

The bus's own ``request`` decodes JSON answers; these come on a reply topic of their own,
the bus's reply topic with ``-bin`` after the client id (``fm/v1/ops/cache-{site}/reply/
{client}-bin`` for a site cache, whose bus names its duty), read with one raw subscription and
matched to their request by correlation id.
"""

from __future__ import annotations

import asyncio

import structlog
from pydantic import ValidationError

from fogmesh.bus import Bus, MessageContext, RawMessage, reply_topic_for
from fogmesh.protocol import ErrorReply, RemoteError, RequestTimeout, topics
from fogmesh.protocol.artefacts import ARTEFACTS_DUTY, ChunkData, ReadChunk, StoreVerb, read_frame

__all__ = ["ChunkReader"]

log = structlog.get_logger("fogmesh.artefacts")


class ChunkReader:
    """Reads chunks from the store in binary frames over ``bus``; :meth:`attach` first."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.topic = topics.ops(ARTEFACTS_DUTY, StoreVerb.READ.value)
        base = reply_topic_for(
            self.topic,
            username=bus.config.username,
            client_id=bus.config.client_id,
            duty=bus.config.reply_duty,
        )
        self.reply_to = f"{base}-bin"
        self._pending: dict[str, asyncio.Future[tuple[ChunkData, bytes]]] = {}

    def attach(self) -> None:
        """Subscribe the frames' reply topic."""
        self.bus.subscribe(self.reply_to, RawMessage, self._on_frame)

    async def _on_frame(self, raw: RawMessage, _ctx: MessageContext) -> None:
        try:
            framed = read_frame(raw.payload)
            if framed is None:
                error = ErrorReply.model_validate_json(raw.payload)
                future = self._pending.get(error.correlation_id)
                if future is not None and not future.done():
                    future.set_exception(RemoteError(error.error))
                return
        except ValidationError as exc:
            log.warning("a chunk answer that is no frame", error=str(exc)[:200])
            return
        header, data = framed
        future = self._pending.get(header.correlation_id)
        if future is not None and not future.done():
            future.set_result((header, data))

    async def read_bytes(
        self, ref: str, offset: int, length: int, *, timeout: float
    ) -> tuple[ChunkData, bytes]:
        """Ask for ``length`` bytes of ``ref`` at ``offset``; the header and the bytes.

        Raises :class:`RemoteError` for the store's refusal, :class:`RequestTimeout` when no
        answer comes within ``timeout``.
        """
        request = ReadChunk(
            ref=ref,
            offset=offset,
            length=length,
            binary=True,
            reply_to=self.reply_to,
            source=self.bus.config.client_id,
        )
        future: asyncio.Future[tuple[ChunkData, bytes]] = asyncio.get_running_loop().create_future()
        self._pending[request.correlation_id] = future
        try:
            async with asyncio.timeout(timeout):
                await self.bus.publish(self.topic, request, qos=1)
                return await future
        except TimeoutError as exc:
            raise RequestTimeout(
                f"no chunk on {self.topic} within {timeout}s",
                topic=self.topic,
                correlation_id=request.correlation_id,
                timeout=timeout,
            ) from exc
        finally:
            self._pending.pop(request.correlation_id, None)
