"""How the CLI reaches the bus: settings from flags and the environment, and a connection
that fails fast with a clear sentence when the broker cannot be reached."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt
from pydantic import ValidationError

from fogmesh.bus import Bus, BusConfig
from fogmesh.cli.errors import CliError
from fogmesh.protocol import error_info_from_validation, new_id
from fogmesh.service import TLS_SETTINGS, BrokerSettings, broker_env

__all__ = ["CliSettings", "connect"]


@dataclass(frozen=True, slots=True)
class CliSettings:
    """Where the CLI connects and as whom."""

    host: str = "127.0.0.1"
    port: int = 1883
    tenant: str = "demo"
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    """TLS and the other broker settings (``FOGMESH_BROKER_TLS``, ``..._CA_FILE``, ...); the
    address, account and timeout above win over its own."""

    def bus_config(self, client_id: str) -> BusConfig:
        """The CLI's bus settings: a throw-away clean session as ``client_id``."""
        broker = self.broker.model_copy(
            update={"host": self.host, "port": self.port, "username": self.username,
                    "password": self.password, "timeout_s": self.timeout, "client_id": None}
        )  # fmt: skip
        return broker.bus_config(client_id, clean_session=True)

    @property
    def acts_as_tenant_account(self) -> bool:
        """True when the account is the tenant's own (its username is the tenant id), so it
        may read only that tenant's topics; False for an operator acting for the tenant."""
        return self.username is not None and self.username == self.tenant

    @classmethod
    def from_env(cls) -> CliSettings:
        """Defaults from ``FOGMESH_BROKER`` (host:port), ``FOGMESH_TENANT``, ``FOGMESH_USERNAME``
        and ``FOGMESH_PASSWORD``."""
        host, port = "127.0.0.1", 1883
        broker = os.environ.get("FOGMESH_BROKER", "")
        if broker:
            host, _, port_text = broker.rpartition(":")
            if not host or not port_text.isdigit():
                raise CliError(f"FOGMESH_BROKER must be host:port, not {broker!r}", code=2)
            port = int(port_text)
        return cls(
            host=host,
            port=port,
            tenant=os.environ.get("FOGMESH_TENANT", "demo"),
            username=os.environ.get("FOGMESH_USERNAME") or None,
            password=os.environ.get("FOGMESH_PASSWORD") or None,
            broker=_broker_from_env(),
        )


def _broker_from_env() -> BrokerSettings:
    """The TLS part of the broker settings from ``FOGMESH_BROKER_*``; a bad value is one line
    naming the variable (exit 2), never a traceback."""
    try:
        return BrokerSettings.model_validate(broker_env(os.environ, only=TLS_SETTINGS))
    except ValidationError as exc:
        info = error_info_from_validation(exc)
        fields = [
            f"FOGMESH_BROKER_{f.loc.upper()}: {f.msg}" if f.loc.isidentifier() else f.msg
            for f in info.fields
        ]
        reason = "; ".join(fields) or info.message
        raise CliError(f"bad broker settings in the environment: {reason}", code=2) from exc


def _unreachable(config: BusConfig, reason: str) -> CliError:
    return CliError(f"cannot reach the broker at {config.host}:{config.port}: {reason}", code=3)


async def _probe(config: BusConfig) -> None:
    """One full MQTT connect and disconnect with the bus's own settings, so a broker that is
    down or refuses the account is one clear sentence at once (the bus would retry with
    back-off). A bare TCP probe made the broker log an error for every command: it sent no
    CONNECT."""
    try:
        async with aiomqtt.Client(
            config.host,
            config.port,
            identifier=f"{config.client_id}-probe",
            username=config.username,
            password=config.password,
            clean_session=True,
            tls_context=config.tls,
            transport="websockets" if config.transport == "websockets" else "tcp",
            websocket_path=config.websocket_path,
            timeout=config.timeout,
        ):
            pass
    except aiomqtt.MqttCodeError as exc:  # the broker answered CONNECT with a refusal
        raise CliError(
            f"the broker at {config.host}:{config.port} refused the connection as "
            f"{config.username or 'anonymous'} ({exc}; wrong credentials?)",
            code=3,
        ) from exc
    except aiomqtt.MqttError as exc:  # aiomqtt keeps only the text of socket errors
        text = str(exc)
        if "refused" in text.lower():
            raise _unreachable(config, "connection refused (is the broker running?)") from exc
        if "timed out" in text.lower():
            raise _unreachable(config, "timed out") from exc
        raise _unreachable(config, text) from exc


@contextlib.asynccontextmanager
async def connect(settings: CliSettings) -> AsyncIterator[Bus]:
    """A connected :class:`Bus` (a throw-away clean session), or a :class:`CliError`."""
    # a node or tenant account owns only client ids that start with its name
    client_id = f"{settings.username or 'cli'}-cli-{new_id()[:12]}"
    config = settings.bus_config(client_id)
    await _probe(config)
    async with Bus(config) as bus:
        try:
            await bus.wait_connected(timeout=settings.timeout)
        except TimeoutError as exc:
            raise CliError(
                f"the broker at {settings.host}:{settings.port} did not accept the connection "
                "(wrong credentials?)",
                code=3,
            ) from exc
        yield bus
