"""Plumbing every fogmesh service shares: broker settings, logging set-up and running until
signalled."""

from fogmesh.service._broker import (
    BROKER_ENV,
    TLS_SETTINGS,
    BrokerSettings,
    add_broker_arguments,
    broker_env,
    broker_flags,
)
from fogmesh.service._lease import LeaseKeeper
from fogmesh.service._logging import configure_logging
from fogmesh.service._run import run_until_signalled, serve

__all__ = [
    "BROKER_ENV",
    "TLS_SETTINGS",
    "BrokerSettings",
    "LeaseKeeper",
    "add_broker_arguments",
    "broker_env",
    "broker_flags",
    "configure_logging",
    "run_until_signalled",
    "serve",
]
