"""fogmesh's registry: the record of tenants, nodes, apps, workloads and events.

It is fed from the bus (hello, state, heartbeat, actual, events), judges each node's liveness,
and answers queries on ``fm/v1/api/{tenant}/{nodes,workloads,events,registry-apps}/...``.
See ``docs/registry.md``.
"""

from fogmesh.registry.service import Registry
from fogmesh.registry.settings import RegistrySettings

__all__ = ["Registry", "RegistrySettings"]
