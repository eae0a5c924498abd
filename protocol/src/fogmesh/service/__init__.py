"""Plumbing every fogmesh service shares: broker settings, loading a service's settings,
logging set-up, running until signalled and holding a single-writer lease.

Each name below is imported from its module when first asked for (module ``__getattr__``), so
a process loads only the plumbing it uses: the node agent, which holds no lease, never loads
the lease keeper, the leader duty nor the settings loader (docs/agent.md, "Memory").
"""

from typing import TYPE_CHECKING

from fogmesh.protocol._lazy import homes, lazy_exports

if TYPE_CHECKING:  # to a type checker each name is its module's own, nothing else
    from fogmesh.service._broker import (
        BROKER_ENV,
        TLS_SETTINGS,
        BrokerSettings,
        add_broker_arguments,
        broker_env,
        broker_flags,
    )
    from fogmesh.service._duty import LeaderDuty, LeaderService
    from fogmesh.service._lease import LeaseKeeper
    from fogmesh.service._logging import configure_logging
    from fogmesh.service._run import run_until_signalled, serve
    from fogmesh.service._settings import LeaderSettings, ServiceSettings

__all__ = [
    "BROKER_ENV",
    "TLS_SETTINGS",
    "BrokerSettings",
    "LeaderDuty",
    "LeaderService",
    "LeaderSettings",
    "LeaseKeeper",
    "ServiceSettings",
    "add_broker_arguments",
    "broker_env",
    "broker_flags",
    "configure_logging",
    "run_until_signalled",
    "serve",
]

_HOMES = homes(
    {  # module -> the names of __all__ it defines
        "_broker": (
            "add_broker_arguments broker_env BROKER_ENV broker_flags BrokerSettings TLS_SETTINGS"
        ),
        "_duty": "LeaderDuty LeaderService",
        "_lease": "LeaseKeeper",
        "_logging": "configure_logging",
        "_run": "run_until_signalled serve",
        "_settings": "LeaderSettings ServiceSettings",
    }
)

if not TYPE_CHECKING:  # a type checker sees the imports above instead
    __getattr__ = lazy_exports(__name__, globals(), _HOMES)
