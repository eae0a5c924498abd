"""The fogmesh bus client: typed MQTT publish / subscribe / request over aiomqtt.

See ``docs/bus-api.md`` for the contract every service relies on.
"""

from fogmesh.bus._backoff import backoff_delay
from fogmesh.bus._client import Bus, Handler
from fogmesh.bus._config import BusConfig, OutboxPolicy, Will
from fogmesh.bus._context import MessageContext, RawMessage, Refusal
from fogmesh.bus._reply_rule import reply_allowed, reply_topic_for
from fogmesh.bus._router import Action, RequestRouter
from fogmesh.bus._socket_drain import drain_reads

__all__ = [
    "Action",
    "Bus",
    "BusConfig",
    "Handler",
    "MessageContext",
    "OutboxPolicy",
    "RawMessage",
    "Refusal",
    "RequestRouter",
    "Will",
    "backoff_delay",
    "drain_reads",
    "reply_allowed",
    "reply_topic_for",
]
