"""fogmesh's node agent: reports the node's facts and usage, keeps its workloads running.

One agent runs per node. It announces the node (``hello``, ``state``, ``heartbeat``), keeps a
copy of the node's desired state on disk, reconciles what the runtime plugins run toward it
(level-triggered, with each workload moving through the :class:`WorkloadPhase` state machine),
publishes ``actual``, answers commands (logs, upload, restart, report) and keeps supervising
while no broker can be reached. See ``docs/agent.md``.

The names below are imported on first use (module ``__getattr__``), so that importing
``fogmesh.agent.cli``, the entry point, loads nothing before it has decided what the process
keeps out (docs/agent.md, "Memory").
"""

from typing import TYPE_CHECKING

from fogmesh.protocol._lazy import homes, lazy_exports

if TYPE_CHECKING:
    from fogmesh.agent.config import AgentConfig, BrokerSettings, load_config
    from fogmesh.agent.phases import IllegalTransition, PhaseMachine
    from fogmesh.agent.reconcile import Reconciler
    from fogmesh.agent.store import DesiredStore

__all__ = [
    "AgentConfig",
    "BrokerSettings",
    "DesiredStore",
    "IllegalTransition",
    "PhaseMachine",
    "Reconciler",
    "load_config",
]

_HOMES = homes(
    {
        "config": "AgentConfig BrokerSettings load_config",
        "phases": "IllegalTransition PhaseMachine",
        "reconcile": "Reconciler",
        "store": "DesiredStore",
    }
)

if not TYPE_CHECKING:  # a type checker sees the imports above instead
    __getattr__ = lazy_exports(__name__, globals(), _HOMES)
