"""Plumbing every fogmesh service shares: logging set-up and running until signalled."""

from fogmesh.service._logging import configure_logging
from fogmesh.service._run import run_until_signalled, serve

__all__ = ["configure_logging", "run_until_signalled", "serve"]
