"""The ``fogmesh`` command: run a fleet on this machine, query it, deploy apps, read logs."""

from fogmesh.cli.main import app, main

__all__ = ["app", "main"]
