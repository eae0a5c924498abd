"""The one broker-settings model: its rules, and every service's flags reaching a TLS broker.

The TLS broker is a real Mosquitto with a certificate from a throw-away CA made by openssl; the
certificate names ``broker.test`` while the tests dial 127.0.0.1, so ``tls_server_name`` is
what makes the name check pass.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from fogmesh.agent.cli import build_parser as agent_parser
from fogmesh.agent.cli import config_from_args as agent_config
from fogmesh.bus import Bus, BusConfig, OutboxPolicy
from fogmesh.cli.session import CliSettings
from fogmesh.protocol import Event, EventKind, topics
from fogmesh.registry.cli import parse_args as registry_args
from fogmesh.registry.cli import settings_from as registry_settings
from fogmesh.scheduler.cli import load_config as scheduler_config
from fogmesh.scheduler.cli import parse_args as scheduler_args
from fogmesh.service import BrokerSettings, broker_env
from tests.support.brokers import Mosquitto, free_port, require_mosquitto
from tests.support.buses import eventually, unique

NAME = "broker.test"


def test_bus_config_defaults_the_client_id_and_the_account() -> None:
    b = BrokerSettings(host="h", port=1884, outbox_limit=5, outbox_policy=OutboxPolicy.REJECT)
    cfg = b.bus_config("svc")
    assert (cfg.host, cfg.port, cfg.client_id, cfg.username) == ("h", 1884, "svc", "svc")
    assert (cfg.outbox_limit, cfg.outbox_policy, cfg.tls) == (5, OutboxPolicy.REJECT, None)
    own = BrokerSettings(client_id="mine", username="acct").bus_config("svc")
    assert (own.client_id, own.username) == ("mine", "acct")
    with pytest.raises(ValueError, match="client id"):
        BrokerSettings().bus_config()


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValidationError, match="need tls"):
        BrokerSettings(ca_file=Path("/ca.pem"))
    with pytest.raises(ValidationError, match="key_file needs cert_file"):
        BrokerSettings(tls=True, key_file=Path("/k.pem"))
    with pytest.raises(ValidationError, match="reconnect_base_s"):
        BrokerSettings(reconnect_base_s=5, reconnect_cap_s=1)
    with pytest.raises(ValidationError):
        BrokerSettings.model_validate({"transport": "udp"})


def test_the_environment_fills_only_what_is_set() -> None:
    env = {"FOGMESH_BROKER_HOST": "b", "FOGMESH_USERNAME": "", "FOGMESH_BROKER_TLS": "1"}
    assert broker_env(env) == {"host": "b", "tls": "1"}
    assert broker_env(env, only={"tls"}) == {"tls": "1"}


def test_old_flat_scheduler_keys_fill_the_broker_block(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.yaml"
    path.write_text("host: h\nport: 1999\nusername: s\npassword: p\nclient_id: sched\n")
    config = scheduler_config(scheduler_args(["--config", str(path), "--port", "2000"]))
    assert (config.broker.host, config.broker.port, config.broker.password) == ("h", 2000, "p")
    assert config.client_id == "sched"


@dataclass
class TlsBroker:
    """A Mosquitto that speaks only TLS, with the CA that signed its certificate."""

    port: int
    ca_file: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    require_mosquitto()
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed; .ci/run installs it")
    d = tmp_path / "tls"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=fogmesh test CA", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", f"/CN={NAME}", cwd=d)  # fmt: skip
    (d / "san.ext").write_text(f"subjectAltName=DNS:{NAME}\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext",
             cwd=d)  # fmt: skip
    port = free_port()
    conf = d / "mosquitto.conf"
    conf.write_text(
        # run as root, mosquitto drops to its own user, which cannot enter pytest's 0700
        # tmp dirs to read the certificates; "user" has no effect for a non-root run
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {d / 'ca.pem'}\ncertfile {d / 'server.pem'}\nkeyfile {d / 'server.key'}\n"
    )
    broker = Mosquitto(conf, d / "mosquitto.log")
    try:
        broker.wait_serving(port)
        yield TlsBroker(port, d / "ca.pem")
    finally:
        broker.stop()


def test_a_wrong_server_name_fails_the_handshake(tls_broker: TlsBroker) -> None:
    ctx = BrokerSettings(tls=True, ca_file=tls_broker.ca_file, tls_server_name="other.test")
    context = ctx.ssl_context()
    assert context is not None
    with (
        socket.create_connection(("127.0.0.1", tls_broker.port), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(sock, server_hostname="127.0.0.1")


def _configs(broker: TlsBroker) -> dict[str, BusConfig]:
    """The bus settings each service makes from its own command line, all pointing at TLS."""
    flags = ["--port", str(broker.port), "--tls", "--ca-file", str(broker.ca_file),
             "--tls-server-name", NAME]  # fmt: skip
    sched = scheduler_config(scheduler_args([*flags, "--client-id", unique("sched")]))
    registry = registry_settings(registry_args([*flags, "--client-id", unique("reg")]))
    node = unique("n")
    agent = agent_config(agent_parser().parse_args([*flags, "--node-id", node]))
    cli = CliSettings(
        port=broker.port,
        broker=BrokerSettings(tls=True, ca_file=broker.ca_file, tls_server_name=NAME),
    )
    return {
        "scheduler": sched.broker.bus_config(sched.client_id),
        "registry": registry.bus,
        "agent": agent.broker.bus_config(f"{node}-agent"),
        "cli": cli.bus_config(unique("cli")),
    }


async def test_every_service_reaches_a_tls_broker(tls_broker: TlsBroker) -> None:
    configs = _configs(tls_broker)
    got: list[str] = []
    topic = topics.fleet_event(EventKind.NODE_BACK)

    async def seen(event: Event, _ctx: object) -> None:
        got.append(event.source)

    tls = BrokerSettings(tls=True, ca_file=tls_broker.ca_file, tls_server_name=NAME)
    reader = Bus(CliSettings(port=tls_broker.port, broker=tls).bus_config(unique("reader")))
    reader.subscribe(topic, Event, seen)  # restored before the bus counts as connected
    async with reader:
        await reader.wait_connected(timeout=20)
        for name, cfg in configs.items():
            async with Bus(cfg) as bus:
                await bus.wait_connected(timeout=20)
                await bus.publish(topic, Event(kind=EventKind.NODE_BACK, source=name), qos=1)
        await eventually(lambda: len(got) == len(configs), what="an event from every service")
    assert sorted(got) == sorted(configs)
