"""The common ground of the mesh file's models: the strict pydantic base and the error.

Every model of the mesh file (in :mod:`fogmesh.broker.mesh_brokers`,
:mod:`fogmesh.broker.mesh_links` and :mod:`fogmesh.broker.config`) derives from
:class:`StrictModel`: unknown keys are errors and a loaded mesh is immutable.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from fogmesh.protocol import FogmeshError

__all__ = ["MeshConfigError", "StrictModel"]


class MeshConfigError(FogmeshError, ValueError):
    """The mesh file is missing, unreadable or invalid."""


class StrictModel(BaseModel):
    """A mesh file model: unknown keys are refused, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
