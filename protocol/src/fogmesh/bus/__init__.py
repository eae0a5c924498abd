"""The fogmesh bus client: typed MQTT publish / subscribe / request over aiomqtt.

See ``docs/bus-api.md`` for the contract every service relies on.
"""

from fogmesh.bus._backoff import backoff_delay
from fogmesh.bus._client import Bus, Handler
from fogmesh.bus._config import BusConfig, OutboxPolicy, Will
from fogmesh.bus._context import MessageContext, RawMessage, Refusal

__all__ = [
    "Bus",
    "BusConfig",
    "Handler",
    "MessageContext",
    "OutboxPolicy",
    "RawMessage",
    "Refusal",
    "Will",
    "backoff_delay",
]
