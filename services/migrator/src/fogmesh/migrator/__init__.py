"""fogmesh's migrator: moves a workload off a dead, overloaded or drained node, with its state.

It decides and orchestrates; the scheduler stays the only writer of desired state (see
``docs/migrator.md``). :class:`MigratorService` runs it on the bus.
"""

from fogmesh.migrator.config import MigratorConfig
from fogmesh.migrator.service import MigratorService

__all__ = ["MigratorConfig", "MigratorService"]
