"""Every topic of the tree with its message model, direction, QoS and retain flag.

This table is the single source of ``docs/topics.md`` (see :mod:`fogmesh.protocol.docs`); a test
fails when the document is stale. Its rows are kept by piece, in the document's order:
``catalogue_nodes`` (the node agent's), ``catalogue_apps`` (apps and migrations),
``catalogue_artefacts``, ``catalogue_events`` (events, data, devices, replies) and
``catalogue_mesh`` (links, sessions and the services' records); a row is a
:class:`~fogmesh.protocol.catalogue_spec.TopicSpec`.
"""

from __future__ import annotations

from fogmesh.protocol.catalogue_apps import APPS
from fogmesh.protocol.catalogue_artefacts import ARTEFACTS
from fogmesh.protocol.catalogue_events import EVENTS
from fogmesh.protocol.catalogue_mesh import MESH
from fogmesh.protocol.catalogue_nodes import NODES
from fogmesh.protocol.catalogue_spec import TopicSpec

__all__ = ["CATALOGUE", "TopicSpec"]

CATALOGUE: tuple[TopicSpec, ...] = (*NODES, *APPS, *ARTEFACTS, *EVENTS, *MESH)
