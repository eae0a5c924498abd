"""TLS on the WAN: a link and an agent over a TLS listener with the fleet's own CA."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from fogmesh.agent.config import AgentConfig
from fogmesh.agent.join import prepare
from fogmesh.broker.certs import CertPair, issue_cert, make_ca
from fogmesh.protocol import topics
from tests.security.conftest import fogmesh
from tests.support.brokers import free_port
from tests.support.mesh import MeshProcess
from tests.support.mesh_file import PASSWORDS, broker_spec, link_spec, port_of, write_mesh
from tests.support.mqtt import client, eventually_delivered


@dataclass(frozen=True)
class TlsMesh:
    """A site linked to a cloud's TLS listener, and the CA both trust."""

    ca: CertPair
    cloud: int  # the cloud's plain port (its own services)
    cloud_tls: int
    site: int


@pytest.fixture
def mesh(tmp_path: Path, procs: list[MeshProcess]) -> TlsMesh:
    ca = make_ca(tmp_path / "pki")
    server = issue_cert(ca, tmp_path / "pki", "cloud", ["127.0.0.1", "localhost"])
    tls_port = free_port()
    cloud = broker_spec(tmp_path, "cloud")
    cloud["listeners"].append(
        {"name": "wan", "port": tls_port, "tls": {"certfile": str(server.cert),
                                                  "keyfile": str(server.key)}}
    )  # fmt: skip
    rules = [
        {"pattern": "fm/v1/data/#", "direction": "out"},
        {"pattern": "fm/v1/accounts/#", "direction": "in"},
        {"pattern": "fm/v1/tenants/#", "direction": "in"},
    ]
    up = link_spec("up", "site", "cloud", rules)
    up["remote"].update(listener="wan", tls={"cafile": str(ca.cert)})
    path = write_mesh(
        tmp_path / "mesh.yaml", {"cloud": cloud, "site": broker_spec(tmp_path, "site")}, [up]
    )
    procs.append(MeshProcess(path, "cloud").start())
    procs.append(MeshProcess(path, "site").start())
    return TlsMesh(ca, port_of(path, "cloud"), tls_port, port_of(path, "site"))


def _tls_client(port: int, user: str, cafile: Path | None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=user,
        password=PASSWORDS[user],
        identifier=f"{user}-t{uuid.uuid4().hex[:10]}",
        tls_params=aiomqtt.TLSParameters(ca_certs=str(cafile) if cafile else None),
        timeout=20,
    )


async def test_a_link_carries_over_tls_and_account_records_cross_it(mesh: TlsMesh) -> None:
    got: list[aiomqtt.Message] = []
    async with client(mesh.cloud, "svc") as cloud:
        await cloud.subscribe("fm/v1/data/acme/#", qos=1)
        reader = asyncio.create_task(_collect(cloud, got))
        async with client(mesh.site, "acme") as site:
            await eventually_delivered(
                lambda: site.publish(topics.data("acme", "app", "s"), b"over-tls", qos=1),
                lambda: bool(got),
            )
        reader.cancel()
    # an account made at the cloud is admitted by the site broker (the record crossed the link)
    fogmesh(
        mesh.cloud, "account", "create", "edge-5", "--role", "node", "--password", "edge5-password"
    )

    async def admitted() -> bool:
        try:
            async with client(mesh.site, "edge-5", password="edge5-password"):
                return True
        except aiomqtt.MqttError:
            return False

    deadline = asyncio.get_running_loop().time() + 60
    while not await admitted():
        assert asyncio.get_running_loop().time() < deadline, "the account never reached the site"
        await asyncio.sleep(0.2)


async def test_an_agent_joins_over_tls(mesh: TlsMesh, tmp_path: Path) -> None:
    token = fogmesh(mesh.cloud, "node", "token", "--node", "edge-4").strip()
    config = AgentConfig.model_validate(
        {
            "state_dir": tmp_path / "agent",
            "broker": {"host": "127.0.0.1", "port": mesh.cloud_tls, "tls": True,
                       "ca_file": str(mesh.ca.cert)},
        }
    )  # fmt: skip
    joined = await prepare(config, token)
    assert joined.broker.username == "edge-4"
    async with _tls_client(mesh.cloud_tls, "svc", mesh.ca.cert) as svc:
        await svc.publish(topics.node("edge-4", "desired"), b"{}", qos=1)


async def test_a_client_without_the_ca_cannot_connect(mesh: TlsMesh) -> None:
    with pytest.raises(aiomqtt.MqttError) as caught:
        async with _tls_client(mesh.cloud_tls, "svc", None):
            pass
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)  # refused by TLS, not by the login
    # nor one that trusts another CA
    other = make_ca(Path(str(mesh.ca.cert.parent) + "-other"))
    with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
        async with _tls_client(mesh.cloud_tls, "svc", other.cert):
            pass
    # with the CA the same account is admitted
    async with _tls_client(mesh.cloud_tls, "svc", mesh.ca.cert):
        pass


async def _collect(c: aiomqtt.Client, sink: list[aiomqtt.Message]) -> None:
    async for msg in c.messages:
        sink.append(msg)
