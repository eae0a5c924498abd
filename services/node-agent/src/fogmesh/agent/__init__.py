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

from importlib import import_module
from typing import TYPE_CHECKING, Any

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

_HOMES = {
    "AgentConfig": "fogmesh.agent.config",
    "BrokerSettings": "fogmesh.agent.config",
    "load_config": "fogmesh.agent.config",
    "IllegalTransition": "fogmesh.agent.phases",
    "PhaseMachine": "fogmesh.agent.phases",
    "Reconciler": "fogmesh.agent.reconcile",
    "DesiredStore": "fogmesh.agent.store",
}


def __getattr__(name: str) -> Any:
    """Import one of :data:`__all__` from its module when first asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(home), name)
