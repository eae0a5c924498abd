"""fogmesh's scheduler: turns app manifests into placements and writes each node's desired state.

:mod:`fogmesh.scheduler.placement` is the pure placement engine; :class:`SchedulerService` runs
it on the bus (see ``docs/scheduler.md``).
"""

from fogmesh.scheduler.config import Quota, SchedulerConfig
from fogmesh.scheduler.service import SchedulerService

__all__ = ["Quota", "SchedulerConfig", "SchedulerService"]
