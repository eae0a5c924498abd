"""fogmesh's scheduler: turns app manifests into placements and writes each node's desired state.

:mod:`fogmesh.scheduler.placement` is the pure placement engine; :mod:`fogmesh.scheduler.service`
runs it on the bus.
"""

__all__: list[str] = []
