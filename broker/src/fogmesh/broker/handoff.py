"""A persistent session follows its client across the mesh: the old broker hands its queue on.

A persistent session lives on one broker. A client that comes back at *another* broker of the
mesh with the same client id (a workload replica moved to a node of another site) starts a new
session there, and what its old broker queued for it (readings published while it was away)
would stay there. So:

* when a persistent, non-bridge session subscribes, its broker publishes a **claim** on
  :data:`CLAIM_TOPIC` (client id, username, the filters, the broker's name); the links carry it
  to every broker (they must carry ``fm/v1/mesh/sessions/#`` both ways; ``fogmesh up``'s
  links carry ``fm/v1/mesh/#``);
* a broker that holds a *disconnected* persistent session of that client id and username hands
  on every message it holds for it that matches a claimed filter: the in-flight ones first
  (sent, never acknowledged), then the offline queue, in order, each wrapped in a
  :class:`Handoff` on :func:`handoff_topic` of the claiming broker, published QoS 1 through the
  inbound journal (durable before the old copy is deleted: a crash between gives a duplicate);
  it then drops those subscriptions (the session itself when none is left), so nothing more
  queues there. A session still connected when the claim arrives (the old replica not stopped
  yet) is handed on when it disconnects (the claim is remembered in memory);
* the claiming broker, on a handoff addressed to it from a bridge, puts the message in the
  session's own queue (persisted) and delivers it if the client is connected; the handoff's
  journal entry goes only then.

Order: per input, the handed-on backlog arrives in its order; messages the new session got
live before the backlog arrived come before it (at-least-once, as QoS 1 allows). Claims and
handoffs count only from bridge clients (the links), never from other clients.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.session import Session
from pydantic import ValidationError

from fogmesh.broker import outflight
from fogmesh.broker.delivery import BRIDGE_PREFIX
from fogmesh.broker.persistence import SqlitePersistencePlugin
from fogmesh.broker.topicmatch import is_valid_filter, matches
from fogmesh.protocol.mesh import HandedOnMessage as Handoff
from fogmesh.protocol.mesh import SessionClaim as Claim

__all__ = ["CLAIM_TOPIC", "HANDOFF_PREFIX", "Claim", "Handoff", "SessionHandoff", "handoff_topic"]

log = logging.getLogger(__name__)
CLAIM_TOPIC = "fm/v1/mesh/sessions/claim"
"""A broker says: client X's persistent session is here now, with these filters."""
HANDOFF_PREFIX = "fm/v1/mesh/sessions/handoff/"
"""``+ {broker}``: messages handed on to that broker's session of the same client."""


def handoff_topic(broker: str) -> str:
    """Where handed-on messages for broker ``broker``'s sessions go."""
    return HANDOFF_PREFIX + broker


def _is_bridge(session: Session | None) -> bool:
    return bool(session and session.client_id and session.client_id.startswith(BRIDGE_PREFIX))


class SessionHandoff(Broker):  # type: ignore[misc]
    """The cross-broker session half of :class:`fogmesh.broker.server.MeshBroker`."""

    mesh_name: str | None
    _store: SqlitePersistencePlugin | None
    _journalled: dict[int, tuple[Any, int]]
    _claims: dict[str, Claim]  # claims for sessions still connected here when they came

    def _own_filters(self, session: Session) -> list[str]:
        return [
            flt
            for flt, subs in list(self._subscriptions.items())
            if any(s.client_id == session.client_id for s, _ in subs)
        ]

    async def _handle_subscription(
        self, client_session: Session, handler: Any, subscribe_waiter: Any
    ) -> None:
        await super()._handle_subscription(client_session, handler, subscribe_waiter)
        if self.mesh_name is None or client_session.clean_session or _is_bridge(client_session):
            return
        asked = {flt for flt, _ in subscribe_waiter.result().topics}
        filters = [f for f in self._own_filters(client_session) if f in asked]
        if not filters:
            return
        # the session is here now: a claim another broker made for it before is void
        self._claims.pop(client_session.client_id, None)
        claim = Claim(
            broker=self.mesh_name,
            client_id=client_session.client_id,
            username=client_session.username,
            filters=filters,
        )
        await self._publish_durably(CLAIM_TOPIC, claim.model_dump_json().encode())

    async def _publish_durably(self, topic: str, data: bytes) -> None:
        """Publish as the broker itself, QoS 1, through the inbound journal."""
        entry = await self.journal((None, topic, data, 1, False))  # InboundJournal's
        await self._broadcast_message(None, topic, data, 1, journal=entry)

    async def _handle_message_delivery(
        self, client_session: Session, handler: Any, wait_deliver: Any
    ) -> bool:
        message = wait_deliver.result()
        topic = getattr(message, "topic", None) or ""
        if not _is_bridge(client_session) or self.mesh_name is None:
            return bool(
                await super()._handle_message_delivery(client_session, handler, wait_deliver)
            )
        if topic == handoff_topic(self.mesh_name):
            journal = self._journalled.pop(id(message), (None, None))[1]
            await self._take_handoff(bytes(message.data or b""))
            if journal is not None and self._store is not None:
                self._store.journal_done(journal)
            return True
        if topic == CLAIM_TOPIC:
            await self._take_claim(bytes(message.data or b""))
        # a claim goes on to the other brokers; other handoffs pass through
        return bool(await super()._handle_message_delivery(client_session, handler, wait_deliver))

    async def _take_claim(self, data: bytes) -> None:
        try:
            claim = Claim.model_validate_json(data)
        except ValidationError as exc:
            log.warning("ignoring an invalid session claim: %s", exc.errors()[:1])
            return
        if claim.broker == self.mesh_name or not all(map(is_valid_filter, claim.filters)):
            return
        session = self._sessions.get(claim.client_id, (None, None))[0]
        if session is None or session.clean_session or session.username != claim.username:
            return
        if session.transitions.state == "connected":
            log.info(
                "%s claimed at %s while still here: handed on when it leaves",
                claim.client_id,
                claim.broker,
            )
            self._claims[claim.client_id] = claim
            return
        await self._hand_on(session, claim)

    async def _handle_disconnect(self, client_session: Session, handler: Any, waiter: Any) -> None:
        await super()._handle_disconnect(client_session, handler, waiter)
        claim = self._claims.get(client_session.client_id)
        if claim is not None and client_session.transitions.state != "connected":
            del self._claims[client_session.client_id]
            await self._hand_on(client_session, claim)

    async def _hand_on(self, session: Session, claim: Claim) -> None:
        """Send what ``session`` holds for the claimed filters to the claiming broker."""
        wanted = [m for m in list(session.inflight_out.values()) if self._claimed(m.topic, claim)]
        queue = session.retained_messages
        held: list[RetainedApplicationMessage] = []
        while not queue.empty():
            held.append(queue.get_nowait())
        keep = [m for m in held if not self._claimed(m.topic, claim)]
        handed = [m for m in held if self._claimed(m.topic, claim)]
        for kept in keep:
            queue.put_nowait(kept)
        topic = handoff_topic(claim.broker)
        for msg in [*wanted, *handed]:
            envelope = Handoff(
                client_id=claim.client_id,
                username=claim.username,
                topic=msg.topic,
                qos=int(msg.qos or 1),
                data=base64.b64encode(bytes(msg.data or b"")).decode(),
            )
            # journalled (durable) before the old copy goes: a crash between is a duplicate
            await self._publish_durably(topic, envelope.model_dump_json().encode())
        sent = {id(m) for m in wanted}  # by identity: amqtt's messages compare by packet id
        for packet_id, inflight in list(session.inflight_out.items()):
            if id(inflight) in sent:
                del session.inflight_out[packet_id]
                outflight.settle(inflight)
        store = self._store
        for msg in handed:
            row = None if store is None else store.take_queued_row(msg)
            if row is not None and store is not None:
                store.queued_done(row)
        for flt in claim.filters:
            self._del_subscription(flt, session)
            if flt in self._subscriptions and not self._subscriptions[flt]:
                del self._subscriptions[flt]
        left = self._own_filters(session)
        if store is not None:
            store.forget_subscriptions(claim.client_id, claim.filters)
        if not left:
            await self._delete_session(claim.client_id)
        log.warning(  # seen at the broker's usual level: a session's queue changed brokers
            "%s moved to %s: handed on %d messages (%d in flight), %s",
            claim.client_id,
            claim.broker,
            len(wanted) + len(handed),
            len(wanted),
            "session dropped" if not left else f"{len(left)} filters kept",
        )

    @staticmethod
    def _claimed(topic: str, claim: Claim) -> bool:
        return any(matches(topic, flt) for flt in claim.filters)

    async def _take_handoff(self, data: bytes) -> None:
        """Queue a handed-on message for its session here (persisted), deliver if connected."""
        try:
            handoff = Handoff.model_validate_json(data)
            payload = base64.b64decode(handoff.data, validate=True)
        except (ValidationError, ValueError) as exc:
            log.warning("dropping an invalid session handoff: %s", exc)
            return
        session = self._sessions.get(handoff.client_id, (None, None))[0]
        if (
            session is None
            or session.clean_session
            or session.username != handoff.username
            or not any(matches(handoff.topic, f) for f in self._own_filters(session))
        ):
            log.warning(
                "dropping a message handed on for %s on %s: no such subscription here",
                handoff.client_id,
                handoff.topic,
            )
            return
        broadcast = {"session": None, "topic": handoff.topic, "data": payload}
        await self._retain_broadcast_message(broadcast, max(1, handoff.qos), session)
        if session.transitions.state == "connected":
            await self._publish_session_retained_messages(session)
