"""The placement engine's input (nodes and what already runs on them) and output (a plan)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from fogmesh.protocol.apps import Unschedulable
from fogmesh.protocol.node import NodeFacts, Usage

__all__ = ["Liveness", "NodeInfo", "PlacedWorkload", "Plan", "Want"]


class Liveness(StrEnum):
    """What the scheduler believes about a node: only ``online`` nodes receive workloads."""

    ONLINE = "online"
    STALE = "stale"  # heartbeats are late
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class PlacedWorkload:
    """A workload already on a node: what it requests, and whose it is."""

    name: str
    tenant: str
    app: str
    component: str
    cpu: float = 0.0
    memory: int = 0
    version: str = "1"
    devices: tuple[str, ...] = ()  # what its placement asked for (held exclusively unless shared)


@dataclass(slots=True)
class NodeInfo:
    """One node as the scheduler sees it."""

    id: str
    facts: NodeFacts
    liveness: Liveness = Liveness.ONLINE
    usage: Usage | None = None
    workloads: list[PlacedWorkload] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Want:
    """One workload to place: a replica of a component of the app being planned."""

    component: str
    replica: int


@dataclass(slots=True)
class Plan:
    """The outcome: ``placements`` maps workload name to node id, in decision order.

    ``failures`` holds, for each want that found no node, why each node was refused.
    """

    placements: dict[str, str] = field(default_factory=dict)
    failures: list[Unschedulable] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every want found a node."""
        return not self.failures
