"""Plumbing every fogmesh service shares: broker settings, loading a service's settings,
logging set-up, running until signalled and holding a single-writer lease."""

from fogmesh.service._broker import (
    BROKER_ENV,
    TLS_SETTINGS,
    BrokerSettings,
    add_broker_arguments,
    broker_env,
    broker_flags,
)
from fogmesh.service._duty import LeaderDuty, LeaderService
from fogmesh.service._lease import LeaseKeeper
from fogmesh.service._logging import configure_logging
from fogmesh.service._run import run_until_signalled, serve
from fogmesh.service._settings import LeaderSettings, ServiceSettings

__all__ = [
    "BROKER_ENV",
    "TLS_SETTINGS",
    "BrokerSettings",
    "LeaderDuty",
    "LeaderService",
    "LeaderSettings",
    "LeaseKeeper",
    "ServiceSettings",
    "add_broker_arguments",
    "broker_env",
    "broker_flags",
    "configure_logging",
    "run_until_signalled",
    "serve",
]
