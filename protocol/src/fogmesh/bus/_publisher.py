"""Publishing: straight to the broker while connected, into the bounded outbox while not.

Order is kept: a publish goes straight out only when nothing waits in the outbox before it.
What the outbox holds is flushed, in order, by the connection loop on every connect and in the
background when a publish failed on a live connection.
"""

from __future__ import annotations

import asyncio
import math

import aiomqtt
import structlog
from pydantic import BaseModel

from fogmesh.bus._outbox import OutboundMessage, Outbox
from fogmesh.bus._state import BusState, within
from fogmesh.protocol import NotConnectedError, check_topic

__all__ = ["Publisher"]

log = structlog.get_logger("fogmesh.bus")


class Publisher:
    """A bus's publishes and its outbox."""

    __slots__ = ("_flushing", "_state", "outbox")

    def __init__(self, state: BusState, outbox: Outbox) -> None:
        self._state = state
        self.outbox = outbox
        self._flushing = False

    async def publish(
        self,
        topic: str,
        message: BaseModel,
        *,
        qos: int = 1,
        retain: bool = False,
        queue: bool = True,
    ) -> None:
        """``message`` as JSON, by :meth:`publish_raw`'s rules."""
        await self.publish_raw(
            topic, message.model_dump_json().encode(), qos=qos, retain=retain, queue=queue
        )

    async def publish_raw(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, queue: bool = True
    ) -> None:
        """Hand ``payload`` to the broker now, or queue it (``queue=False``: raise instead)."""
        check_topic(topic)
        outbound = OutboundMessage(topic, payload, qos, retain)
        client = self._state.client
        # Straight to the broker only when nothing waits before it, so order is kept.
        if (
            client is not None
            and self._state.ready.is_set()
            and (not len(self.outbox) or not queue)
        ):
            try:
                await self.send(client, outbound)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                if not queue:
                    raise NotConnectedError(f"publish failed: {exc}", topic=topic) from exc
                log.debug("publish failed; queued", topic=topic, error=str(exc))
                # never let this older copy displace a newer retained value queued meanwhile
                self.outbox.requeue(outbound)
                self._kick_flush()
            return
        if not queue:
            raise NotConnectedError("not connected; this message is not queued", topic=topic)
        self.outbox.put(outbound)
        self._kick_flush()

    def publish_later(self, topic: str, message: BaseModel) -> None:
        """Publish ``message`` (QoS 1) in the background; dropped with a log line when the bus
        runs too many background tasks."""
        if not self._state.spawn(self.publish(topic, message, qos=1), name="publish_later"):
            log.warning("background publish dropped", topic=topic)

    async def flush_outbox(self, client: aiomqtt.Client) -> None:
        """Send everything the outbox holds, in order, on a new connection; a message whose
        send fails or is cancelled goes back first in line."""
        while (outbound := self.outbox.pop()) is not None:
            try:
                await self.send(client, outbound)
            except BaseException:
                self.outbox.requeue(outbound)
                raise

    async def send(self, client: aiomqtt.Client, outbound: OutboundMessage) -> None:
        """One publish on ``client``, bounded by the bus's timeout."""
        await within(
            self._state.config.timeout,
            client.publish(
                outbound.topic,
                outbound.payload,
                qos=outbound.qos,
                retain=outbound.retain,
                timeout=math.inf,
            ),
        )

    def _kick_flush(self) -> None:
        """While connected, send what the outbox holds now rather than at the next reconnect."""
        state = self._state
        if state.group is None or not state.ready.is_set() or self._flushing:
            return
        self._flushing = True
        state.start(self._flush(), name="flush")

    async def _flush(self) -> None:
        state = self._state
        try:
            while (client := state.client) is not None and state.ready.is_set():
                outbound = self.outbox.pop()
                if outbound is None:
                    return
                try:
                    await self.send(client, outbound)
                except (aiomqtt.MqttError, TimeoutError) as exc:
                    self.outbox.requeue(outbound)
                    log.debug("outbox flush failed; will retry", error=str(exc))
                    await asyncio.sleep(state.config.reconnect_base)
        finally:
            self._flushing = False
