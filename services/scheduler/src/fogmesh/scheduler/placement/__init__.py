"""Pure placement: filter the nodes a workload may run on, then pick the cheapest.

No I/O here: the input is a :class:`ClusterView` of :class:`NodeInfo`, the output a
:class:`Plan` (workload name -> node id, or the reason each node was refused).
"""

from fogmesh.scheduler.placement.constraints import Constraints
from fogmesh.scheduler.placement.cost import cost, remaining_fraction, spread_factor
from fogmesh.scheduler.placement.geo import estimated_rtt_ms, haversine_km
from fogmesh.scheduler.placement.model import Liveness, NodeInfo, PlacedWorkload, Plan, Want
from fogmesh.scheduler.placement.planner import (
    Planner,
    all_wants,
    ordered_components,
    workload_name,
)
from fogmesh.scheduler.placement.view import ClusterView

__all__ = [
    "ClusterView",
    "Constraints",
    "Liveness",
    "NodeInfo",
    "PlacedWorkload",
    "Plan",
    "Planner",
    "Want",
    "all_wants",
    "cost",
    "estimated_rtt_ms",
    "haversine_km",
    "ordered_components",
    "remaining_fraction",
    "spread_factor",
    "workload_name",
]
