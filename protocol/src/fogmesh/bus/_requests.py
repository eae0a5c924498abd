"""Request / reply over the JSON envelope (``correlation_id``, ``reply_to``): amqtt has no
MQTT 5.

A request's reply topic follows the request's topic (:func:`fogmesh.bus.reply_topic_for`); the
bus subscribes to a reply topic on its first use and the connection loop restores every one on
each reconnect. A reply resolves the pending request with its correlation id; anything else on
a reply topic is logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any, TypeVar

import aiomqtt
import pydantic_core
import structlog

from fogmesh.bus._publisher import Publisher
from fogmesh.bus._replies import decode_reply
from fogmesh.bus._reply_rule import reply_topic_for
from fogmesh.bus._state import BusState, within
from fogmesh.protocol import BusError, Reply, Request, RequestTimeout

__all__ = ["Requests"]

log = structlog.get_logger("fogmesh.bus")

R = TypeVar("R", bound=Reply)

_REPLY_TO_CACHE = 4096  # request topics whose reply topic is remembered


class Requests:
    """A bus's requests awaiting their replies, and the reply topics it listens on."""

    __slots__ = ("_pending", "_publisher", "_reply_to", "_state", "reply_topic", "reply_topics")

    def __init__(self, state: BusState, publisher: Publisher) -> None:
        config = state.config
        self._state = state
        self._publisher = publisher
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reply_to: dict[str, str] = {}
        """Request topic -> its reply topic: the rule's answer never changes for one bus."""
        self.reply_topic = reply_topic_for(
            "", username=config.username, client_id=config.client_id, duty=config.reply_duty
        )
        """Where replies to this client's requests outside a tenant's API arrive."""
        self.reply_topics = {self.reply_topic}
        """Every reply topic in use (the connection loop subscribes them all)."""

    async def request(
        self, topic: str, request: Request, reply_model: type[R], *, timeout: float
    ) -> R:
        """Send ``request`` and return its reply as ``reply_model`` (see ``Bus.request``)."""
        config = self._state.config
        reply_to = self._reply_to.get(topic)
        if reply_to is None:
            reply_to = reply_topic_for(
                topic, username=config.username, client_id=config.client_id, duty=config.reply_duty
            )
            if len(self._reply_to) >= _REPLY_TO_CACHE:
                self._reply_to.clear()  # a bus asking on that many topics: start afresh
            self._reply_to[topic] = reply_to
        await self._listen_on(reply_to, timeout)
        sent = request.model_copy(
            update={"reply_to": reply_to, "source": request.source or config.client_id}
        )
        correlation_id = sent.correlation_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            async with asyncio.timeout(timeout):
                await self._publisher.publish(topic, sent, qos=1)
                data = await future
        except TimeoutError as exc:
            raise RequestTimeout(
                f"no reply on {topic} within {timeout}s",
                topic=topic,
                correlation_id=correlation_id,
                timeout=timeout,
            ) from exc
        finally:
            self._pending.pop(correlation_id, None)
        return decode_reply(data, reply_model)

    def resolve(self, payload: bytes) -> None:
        """Hand a message that came on a reply topic to the request it answers."""
        try:
            data = pydantic_core.from_json(payload)
        except ValueError:
            log.warning("reply is not JSON", size=len(payload))
            return
        correlation_id = data.get("correlation_id") if isinstance(data, dict) else None
        future = self._pending.get(correlation_id) if isinstance(correlation_id, str) else None
        if future is None:
            log.debug("reply for no pending request", correlation_id=correlation_id)
            return
        if not future.done():
            future.set_result(data)

    def close(self) -> None:
        """Fail every request still waiting: the bus is closing."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BusError("the bus was closed before the reply came"))

    async def _listen_on(self, reply_to: str, timeout: float) -> None:
        """Subscribe to a reply topic on its first use (restored on every reconnect)."""
        if reply_to in self.reply_topics:
            return
        self.reply_topics.add(reply_to)
        client = self._state.client
        if client is None:
            return  # the next connection subscribes it before anything is sent
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await within(
                min(timeout, self._state.config.timeout),
                client.subscribe(reply_to, qos=1, timeout=math.inf),
            )
