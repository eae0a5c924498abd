"""The embedded broker: amqtt with fogmesh's plugins, split horizon and bridge-friendly delivery.

Three amqtt behaviours are changed by overriding small methods of :class:`amqtt.broker.Broker`
(amqtt is pinned to 0.12, whose internals these overrides follow):

* split horizon: a message published by a bridge client (client id starting with
  :data:`BRIDGE_PREFIX`) is never handed back to the same client, and, when the broker's
  ``split_horizon`` is on, to no other bridge client either. MQTT 3.1.1 has no no-local flag;
  this is what keeps a cycle of ``both`` links from circulating a message;
* retain as published: bridge clients receive the publisher's retain flag, so retained
  messages stay retained on the far side (plain clients get 0, as MQTT 3.1.1 requires);
* messages queued for an offline session are delivered with retain=0 (amqtt sets 1), and
  retained messages are replayed on reconnect only for the client's own subscriptions (amqtt
  replays those of every client on the broker);
* nothing acknowledged is dropped when its publisher disconnects: amqtt PUBACKs an incoming
  QoS 1 message as soon as it is in the session's ``delivered_message_queue`` and broadcasts it
  later, one by one, from ``_client_message_loop``; on DISCONNECT (or a lost connection) that
  loop stopped and whatever was still queued, already acknowledged, was silently discarded. A
  burst of publishes followed by a disconnect lost every message the broadcast had not caught
  up with. The loop now broadcasts the whole queue before it handles the disconnect;
* a session taken over by a new connection of the same client (a link reconnecting after a
  silent WAN cut, while the broker still counts the old connection as live) stays connected:
  amqtt let the old connection's teardown mark the shared session disconnected (and publish
  its will) after the new connection was up, so everything published for it afterwards went
  to its offline queue until some later reconnect. The old connection now just stops; the
  session keeps its new connection, its queue and its in-flight messages, and gets them at
  once. In-flight messages whose connection went away are resent on the current one
  (:func:`qos1fix.resend_orphans`). Retained replays on (re)connect iterate a copy of the
  subscription table (amqtt iterated the live dict across awaits: ``RuntimeError: dictionary
  changed size during iteration`` when another client subscribed meanwhile, which killed the
  connection's handling while its socket stayed open);
* an incoming QoS 1 message is acknowledged only once it is durable: it is written to the
  persistence plugin's inbound journal before the PUBACK (:meth:`MeshBroker.journal_incoming`,
  called from qos1fix), and deleted from it once it was broadcast, i.e. stored for every offline
  persistent session and acknowledged by every connected persistent one. A broker that dies in
  between broadcasts the journal again when it starts (at-least-once, never lost);
* a row of a session's offline queue leaves disk only when the client acknowledges its
  delivery (amqtt, and this broker until now, deleted the queue when the session connected):
  a broker killed while delivering the queue delivers the unacknowledged rest after a restart;
* a connection's packets are written once per pass of the event loop, joined
  (:class:`fogmesh.broker.pass_writer.PassWriter`), not with a ``send`` each, and the packets
  a read brought are all read in one pass (:mod:`fogmesh.broker.reader_loop`).

The roles live beside this module, one each: :mod:`fogmesh.broker.takeover` (connections,
take-over, disconnect), :mod:`fogmesh.broker.delivery` (broadcast, split horizon, queue and
retained replay), :mod:`fogmesh.broker.journal` (the inbound journal); :class:`MeshBroker`
puts them together.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from weakref import WeakSet

from amqtt.adapters import StreamReaderAdapter
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

from fogmesh.broker import qos1fix, reader_loop
from fogmesh.broker.config import BrokerSpec
from fogmesh.broker.delivery import BRIDGE_PREFIX, Delivery
from fogmesh.broker.handoff import Claim, SessionHandoff
from fogmesh.broker.journal import InboundJournal
from fogmesh.broker.pass_writer import PassWriter
from fogmesh.broker.persistence import SqlitePersistencePlugin
from fogmesh.broker.takeover import SessionHandling, close_idle

__all__ = ["BRIDGE_PREFIX", "MeshBroker", "amqtt_config"]


def amqtt_config(name: str, spec: BrokerSpec) -> dict[str, Any]:
    """The amqtt configuration dict for broker ``name`` of the mesh."""
    listeners: dict[str, Any] = {}
    for i, lst in enumerate(spec.listeners):
        entry: dict[str, Any] = {"type": lst.type, "bind": f"{lst.host}:{lst.port}"}
        if lst.tls is not None:
            entry.update(ssl=True, certfile=str(lst.tls.certfile), keyfile=str(lst.tls.keyfile))
            if lst.tls.cafile:
                entry["cafile"] = str(lst.tls.cafile)
        # amqtt requires a listener called "default"; the first one takes that name
        listeners["default" if i == 0 else lst.name] = entry
    data_dir = spec.data_dir or Path(f"./fogmesh-{name}")
    spec_json = spec.model_dump_json()
    return {
        "listeners": listeners,
        "session_expiry_interval": spec.session_expiry,
        "plugins": {
            "fogmesh.broker.plugins.MeshAuthPlugin": {"spec_json": spec_json},
            "fogmesh.broker.plugins.MeshAclPlugin": {"spec_json": spec_json},
            "fogmesh.broker.persistence.SqlitePersistencePlugin": {
                "path": str(data_dir / "broker.sqlite"),
                "session_expiry": spec.session_expiry,
            },
        },
    }


class MeshBroker(SessionHandoff, SessionHandling, Delivery, InboundJournal):
    """amqtt's broker with split horizon and bridge-friendly retained handling."""

    def __init__(
        self, config: dict[str, Any], *, split_horizon: bool = True, name: str | None = None
    ) -> None:
        """Build the broker; ``split_horizon`` as in :class:`BrokerSpec`; ``name``, the
        broker's name in the mesh, turns on the session handoff (:mod:`fogmesh.broker.handoff`)."""
        qos1fix.install()
        reader_loop.install()
        BrokerProtocolHandler.handle_read_timeout = close_idle
        super().__init__(config)
        self.split_horizon = split_horizon
        self.mesh_name = name
        self._claims: dict[str, Claim] = {}
        # handlers whose session a newer connection of the same client took over
        self._superseded: WeakSet[Any] = WeakSet()
        self._admitted: WeakSet[Any] = WeakSet()
        self._deliveries: set[asyncio.Future[Any]] = set()
        self._journalled: dict[int, tuple[Any, int]] = {}
        self._store: SqlitePersistencePlugin | None = self.plugins_manager.get_plugin(
            SqlitePersistencePlugin.__name__
        )

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        """amqtt's TCP (and TLS) connection entry, with a pass's packets in one write."""
        await self._client_connected(listener_name, StreamReaderAdapter(reader), PassWriter(writer))
