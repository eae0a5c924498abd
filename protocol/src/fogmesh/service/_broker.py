"""How a service reaches its broker: one settings model every service embeds, and the command
line flags and environment variables that fill it.

The model is what a config file holds (the agent's ``broker:`` block, the scheduler's
``broker:`` block); :meth:`BrokerSettings.bus_config` turns it into the
:class:`~fogmesh.bus.BusConfig` the bus takes.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from fogmesh.bus import BusConfig, OutboxPolicy
from fogmesh.protocol import Ident
from fogmesh.protocol._model import Model

__all__ = [
    "BROKER_ENV",
    "TLS_SETTINGS",
    "BrokerSettings",
    "add_broker_arguments",
    "broker_env",
    "broker_flags",
]


class _ServerNameContext(ssl.SSLContext):
    """A client context that checks the broker's certificate against ``server_name`` (and sends
    it as SNI) instead of the host dialled: for a broker reached by IP address or tunnel.

    The MQTT client wraps its socket with ``server_hostname=<host>``; this is the one place
    that can substitute the name, since the bus takes a context, not a hostname.
    """

    server_name: str | None = None

    def wrap_socket(  # noqa: PLR0917 (the signature of ssl.SSLContext.wrap_socket)
        self,
        sock: Any,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=self.server_name or server_hostname,
            session=session,
        )


class BrokerSettings(Model):
    """Where and as whom a service connects, and how its bus behaves while the broker is away.

    ``client_id`` defaults to the service's own (each service names it); ``username`` defaults
    to the client id, so a broker that admits anonymous clients still tells them apart.
    TLS is on with ``tls: true``: the broker's certificate is checked against ``ca_file`` (else
    the system's CAs) and against ``tls_server_name`` (else ``host``); ``tls_insecure`` skips
    the name check only, never the chain.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    client_id: Ident | None = Field(default=None, description="default: the service's own")
    keepalive: int = Field(default=10, ge=1, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, description="connect and request timeout")
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: Path | None = Field(default=None, description="its key, if not in cert_file")
    tls_insecure: bool = Field(default=False, description="skip hostname verification")
    tls_server_name: str | None = Field(
        default=None, min_length=1, description="the name the certificate must carry"
    )
    transport: Literal["tcp", "websockets"] = "tcp"
    websocket_path: str | None = Field(default=None, description="with websockets, e.g. /mqtt")
    outbox_limit: int = Field(default=10_000, ge=1, description="messages held while away")
    outbox_policy: OutboxPolicy = OutboxPolicy.DROP_OLDEST
    reconnect_base_s: float = Field(default=0.2, gt=0, description="first reconnect back-off")
    reconnect_cap_s: float = Field(default=30.0, gt=0, description="longest reconnect back-off")
    failover: list[str] = Field(
        default_factory=list,
        description="further members of a clustered broker, host:port, tried in turn",
    )

    @model_validator(mode="after")
    def _sane(self) -> BrokerSettings:
        if self.reconnect_base_s > self.reconnect_cap_s:
            raise ValueError("reconnect_base_s must not exceed reconnect_cap_s")
        tls_only = ("ca_file", "cert_file", "key_file", "tls_server_name")
        given = [name for name in tls_only if getattr(self, name) is not None]
        if given and not self.tls:
            raise ValueError(f"{', '.join(given)} need tls: true")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        if self.websocket_path is not None and self.transport != "websockets":
            raise ValueError("websocket_path needs transport: websockets")
        self.failover_endpoints()  # every entry is host:port
        return self

    def failover_endpoints(self) -> tuple[tuple[str, int], ...]:
        """``failover`` as (host, port) pairs; ``ValueError`` for an entry that is not one."""
        out = []
        for entry in self.failover:
            host, sep, port = entry.rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"failover entry {entry!r} is not host:port")
            out.append((host.strip("[]"), int(port)))
        return tuple(out)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context, or None without TLS (``OSError`` / ``ssl.SSLError`` for bad files)."""
        if not self.tls:
            return None
        ctx = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and name by default
        ctx.server_name = self.tls_server_name
        if self.ca_file is not None:
            ctx.load_verify_locations(cafile=str(self.ca_file))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        if self.tls_insecure:
            ctx.check_hostname = False
        return ctx

    def bus_config(self, client_id: str | None = None, *, clean_session: bool = False) -> BusConfig:
        """The bus settings; ``client_id`` is the service's default id (``self.client_id`` wins).

        ``clean_session``: a throw-away session (the CLI); services keep theirs.
        """
        cid = self.client_id or client_id
        if not cid:
            raise ValueError("a client id is needed: set client_id")
        return BusConfig(
            host=self.host,
            port=self.port,
            client_id=cid,
            username=self.username if self.username is not None else cid,
            password=self.password,
            clean_session=clean_session,
            keepalive=self.keepalive,
            tls=self.ssl_context(),
            transport=self.transport,
            websocket_path=self.websocket_path,
            timeout=self.timeout_s,
            outbox_limit=self.outbox_limit,
            outbox_policy=self.outbox_policy,
            reconnect_base=self.reconnect_base_s,
            reconnect_cap=self.reconnect_cap_s,
            failover=self.failover_endpoints(),
        )


# flag (its dest) -> the setting it fills; each flag also has a ``--broker-...`` spelling.
_FLAGS: tuple[tuple[tuple[str, ...], str, dict[str, Any]], ...] = (
    (("--broker-host", "--host"), "host", {"help": "broker host"}),
    (("--broker-port", "--port"), "port", {"type": int, "help": "broker port"}),
    (("--broker-username", "--username"), "username", {"help": "broker account"}),
    (("--broker-password", "--password"), "password", {"help": "its password"}),
    (("--client-id",), "client_id", {"help": "MQTT client id"}),
    (("--tls",), "tls", {"action": "store_true", "default": None, "help": "connect with TLS"}),
    (("--ca-file",), "ca_file", {"type": Path, "help": "CA bundle for the broker's cert"}),
    (("--cert-file",), "cert_file", {"type": Path, "help": "client certificate"}),
    (("--key-file",), "key_file", {"type": Path, "help": "client key"}),
    (("--tls-server-name",), "tls_server_name", {"help": "name the broker's cert must carry"}),
    (("--transport",), "transport", {"choices": ["tcp", "websockets"]}),
    (("--outbox-limit",), "outbox_limit", {"type": int, "help": "messages held while away"}),
)

BROKER_ENV: Mapping[str, str] = {
    "host": "FOGMESH_BROKER_HOST",
    "port": "FOGMESH_BROKER_PORT",
    "username": "FOGMESH_USERNAME",
    "password": "FOGMESH_PASSWORD",
    "client_id": "FOGMESH_CLIENT_ID",
    "tls": "FOGMESH_BROKER_TLS",
    "ca_file": "FOGMESH_BROKER_CA_FILE",
    "cert_file": "FOGMESH_BROKER_CERT_FILE",
    "key_file": "FOGMESH_BROKER_KEY_FILE",
    "tls_server_name": "FOGMESH_BROKER_TLS_SERVER_NAME",
}
"""The environment variable of each broker setting (for the services that read the
environment; empty values count as unset)."""


def add_broker_arguments(parser: argparse.ArgumentParser, *, client_id_help: str = "") -> None:
    """Add the broker flags to ``parser`` (every service spells them the same way)."""
    group = parser.add_argument_group("broker")
    for names, dest, kwargs in _FLAGS:
        options = dict(kwargs)
        if dest == "client_id" and client_id_help:
            options["help"] = client_id_help
        group.add_argument(*names, dest=f"broker_{dest}", **options)


def broker_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The broker settings given on the command line (flags left out are absent)."""
    out: dict[str, Any] = {}
    for _names, dest, _kwargs in _FLAGS:
        value = getattr(args, f"broker_{dest}", None)
        if value is not None:
            out[dest] = value
    return out


TLS_SETTINGS = frozenset({"tls", "ca_file", "cert_file", "key_file", "tls_server_name"})
"""The TLS settings (for a client that takes its address and account elsewhere: the CLI)."""


def broker_env(environ: Mapping[str, str], *, only: Collection[str] = ()) -> dict[str, Any]:
    """The broker settings the environment gives (see :data:`BROKER_ENV`), ``only`` those
    settings when given."""
    return {
        key: environ[var]
        for key, var in BROKER_ENV.items()
        if environ.get(var) and (not only or key in only)
    }
