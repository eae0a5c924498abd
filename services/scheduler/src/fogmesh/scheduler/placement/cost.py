"""The placement cost (paper, section 5.2): lower is better.

The paper's objective is a cost *proportional to the latency* between the data source and the
node and *inversely proportional to the node's remaining computational capability*. fogmesh
scores a candidate node ``i`` for a workload ``w`` as::

    cost(i) = latency_ms(i) / remaining(i) * spread(i)

* ``latency_ms(i)``: the estimated round trip from the app's ``data_source`` to the node
  (:func:`~fogmesh.scheduler.placement.geo.estimated_rtt_ms`); ``UNKNOWN_RTT_MS`` when the node
  has no location; a constant when the app names no data source (then only capacity counts).
* ``remaining(i)``: the smaller of the CPU and memory fractions left free on the node *after*
  placing ``w`` (free = capacity - max(requested by placed workloads, measured use)), floored at
  ``MIN_REMAINING`` so a full node has a large but finite cost.
* ``spread(i)``: ``(1 + same_component) * (1 + SAME_APP_WEIGHT * same_app)``, where the counts are
  the replicas of the same component, and workloads of the same app, already on the node: it
  spreads replicas across nodes and, more gently, an app's components.

Ties are broken by node id (the lowest wins), so the same input always gives the same plan.
"""

from __future__ import annotations

__all__ = [
    "MIN_REMAINING",
    "NO_SOURCE_RTT_MS",
    "SAME_APP_WEIGHT",
    "UNKNOWN_RTT_MS",
    "cost",
    "remaining_fraction",
    "spread_factor",
]

MIN_REMAINING = 1e-3
UNKNOWN_RTT_MS = 100.0
NO_SOURCE_RTT_MS = 1.0
SAME_APP_WEIGHT = 0.25


def remaining_fraction(cpu_free: float, cpu_cap: float, mem_free: float, mem_cap: float) -> float:
    """The smaller of the free CPU and memory fractions, floored at ``MIN_REMAINING``."""
    cpu = cpu_free / cpu_cap if cpu_cap > 0 else 0.0
    mem = mem_free / mem_cap if mem_cap > 0 else 0.0
    return max(min(cpu, mem), MIN_REMAINING)


def spread_factor(same_component: int, same_app: int) -> float:
    """Penalty for stacking replicas of a component (and an app's workloads) on one node."""
    return (1 + same_component) * (1 + SAME_APP_WEIGHT * same_app)


def cost(latency_ms: float, remaining: float, same_component: int = 0, same_app: int = 0) -> float:
    """The cost of one candidate node (see the module docs)."""
    return latency_ms / max(remaining, MIN_REMAINING) * spread_factor(same_component, same_app)
