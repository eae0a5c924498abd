"""``fogmesh up``: a whole fleet on this machine, the sample app deployed, a live view."""

from fogmesh.cli.fleet.command import up

__all__ = ["up"]
