"""A bus's subscriptions: subscribing (refusals retried), and dispatching what arrives.

Each filter has one :class:`~fogmesh.bus._subscription.Subscription` and its worker. A message
goes to every subscription whose filter matches its topic (worked out once per topic by
:class:`~fogmesh.bus._matcher.FilterIndex`), or, on a reply topic, to the request it answers;
one nobody here wants is acknowledged at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING, TypeVar

import aiomqtt
import structlog
from pydantic import BaseModel

from fogmesh.bus._acks import Acknowledger
from fogmesh.bus._backoff import backoff_delay
from fogmesh.bus._matcher import FilterIndex
from fogmesh.bus._replies import payload_bytes
from fogmesh.bus._requests import Requests
from fogmesh.bus._state import BusState, within
from fogmesh.bus._subscription import Delivery, Handler, Subscription

if TYPE_CHECKING:
    from fogmesh.bus._client import Bus

__all__ = ["Subscriptions"]

log = structlog.get_logger("fogmesh.bus")

M = TypeVar("M", bound=BaseModel)


class Subscriptions:
    """The filters a bus subscribes to, their workers, and where each message goes."""

    __slots__ = ("_acks", "_bus", "_index", "_reply_topics", "_requests", "_state", "_subs")

    def __init__(self, bus: Bus, state: BusState, acks: Acknowledger, requests: Requests) -> None:
        self._bus = bus  # what the handlers' contexts carry
        self._state = state
        self._acks = acks
        self._requests = requests
        self._reply_topics = requests.reply_topics  # the same set, read on every message
        self._subs: dict[str, Subscription] = {}
        self._index = FilterIndex()

    def add(
        self,
        topic_filter: str,
        model: type[M],
        handler: Handler[M],
        qos: int,
        max_payload: int | None,
    ) -> None:
        """Subscribe ``topic_filter`` (see ``Bus.subscribe``); a second time replaces it."""
        existing = self._subs.get(topic_filter)
        if existing is not None:
            existing.model, existing.handler, existing.qos = model, handler, qos
            existing.max_payload = max_payload
            return
        sub = Subscription(topic_filter, model, handler, qos, max_payload)
        self._subs[topic_filter] = sub
        self._index.update(self._subs)
        if self._state.group is not None:
            self._start_worker(sub)
        client = self._state.client
        if client is not None:  # also while restoring: that pass may have missed this filter
            self._state.spawn(self._subscribe_now(client, sub))

    def start_workers(self) -> None:
        """Start a worker for every subscription made before the bus ran."""
        for sub in self._subs.values():
            self._start_worker(sub)

    async def restore(self, client: aiomqtt.Client) -> None:
        """Subscribe a new connection to every reply topic and filter."""
        filters = [(t, 1) for t in sorted(self._reply_topics)]
        filters += [(s.filter, s.qos) for s in self._subs.values()]
        await self._subscribe_granted(client, filters)

    def dispatch(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """Queue ``message`` for every subscription it matches (or resolve it as a reply)."""
        delivery = Delivery(message, client, pending=0)
        topic = message.topic.value
        if topic in self._reply_topics:
            self._requests.resolve(payload_bytes(message.payload))
            self._acks.acknowledge(delivery)  # resolving the future is all its handling
            return
        subs = [self._subs[f] for f in self._index.match(topic)]
        delivery.pending = len(subs)
        for sub in subs:
            sub.queue.put_nowait(delivery)
        if not subs:
            self._acks.acknowledge(delivery)  # nobody here wants it (a filter just dropped)

    def _start_worker(self, sub: Subscription) -> None:
        sub.worker = self._state.start(sub.serve(self._bus), name=f"handle[{sub.filter}]")

    async def _subscribe_now(self, client: aiomqtt.Client, sub: Subscription) -> None:
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await self._subscribe_granted(client, [(sub.filter, sub.qos)])

    async def _subscribe_granted(
        self, client: aiomqtt.Client, filters: list[tuple[str, int]]
    ) -> None:
        """Subscribe to ``filters``; any the broker refuses are retried in the background.

        A broker may refuse a subscription for a while (a clustered one re-electing after a
        member died answers SUBACK 0x80) or for good (an ACL): neither may leave a filter
        silently unsubscribed, nor drop a connection that serves every other filter.
        """
        timeout = self._state.config.timeout
        granted = await within(timeout, client.subscribe(filters, timeout=math.inf))
        refused = [f for f, code in zip(filters, granted, strict=False) if _refused(code)]
        if refused:
            log.warning("subscription refused; retrying", filters=[f for f, _ in refused])
            self._state.spawn(self._retry_refused(client, refused), name="resubscribe")

    async def _retry_refused(self, client: aiomqtt.Client, filters: list[tuple[str, int]]) -> None:
        state = self._state
        config = state.config
        attempt = 0
        while filters and client is state.client:
            await asyncio.sleep(
                backoff_delay(attempt, base=config.reconnect_base, cap=config.reconnect_cap)
            )
            attempt += 1
            if client is not state.client:
                return  # reconnected: the restore pass subscribes afresh
            try:
                granted = await within(config.timeout, client.subscribe(filters, timeout=math.inf))
            except (aiomqtt.MqttError, TimeoutError):
                return  # the connection is going: the restore pass takes over
            filters = [f for f, code in zip(filters, granted, strict=False) if _refused(code)]
        if not filters:
            log.info("refused subscription granted", attempts=attempt)


def _refused(code: object) -> bool:
    """Whether a SUBACK return code (an int, or paho's ReasonCode) is a failure (0x80 up)."""
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= 0x80
