"""``fogmesh up --tls`` as a user runs it: every node online over its site's TLS listener, the
sample app's outputs reach a subscriber on the cloud's TLS listener that trusts the fleet's CA
(from ``fleet.env``, as docs/security.md says), the CLI works from ``fleet.env`` over TLS, plain
TCP to a TLS listener and a client without the CA are refused, and Ctrl-C ends the fleet with
nothing left behind."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiomqtt
import pytest
import yaml

from tests.e2e.fleet import NODES, Outputs, fleet_cli, fleet_client, fogmesh_up, leftovers, trusting

UP = ["--tls", "--nodes", "3", "--runtime", "native", "--duration", "600"]


async def _refused(env: dict[str, str], port: int, tls: ssl.SSLContext | None) -> str:
    """The error of a connection to ``port`` that must fail."""
    with pytest.raises(aiomqtt.MqttError) as caught:
        async with fleet_client(env, "e2e-tls-refused", port, tls_context=tls, timeout=20):
            pass
    return str(caught.value)


def _check_files(state: Path, env: dict[str, str]) -> dict[str, int]:
    """The links and agents point at the ``wan`` TLS listeners with the fleet's CA; returns
    each broker's TLS port."""
    ca = str(state / "pki" / "ca.pem")
    assert env["FOGMESH_BROKER_CA_FILE"] == ca
    mesh = yaml.safe_load((state / "mesh.yaml").read_text())
    tls_ports = {
        name: next(lst["port"] for lst in broker["listeners"] if lst.get("tls"))
        for name, broker in mesh["brokers"].items()
    }
    assert env["FOGMESH_BROKER"] == f"127.0.0.1:{tls_ports['cloud']}"
    assert int(env["FOGMESH_TLS_PORT"]) == tls_ports["cloud"]
    for link in mesh["links"]:
        assert link["remote"]["listener"] == "wan", link
        assert link["remote"]["tls"]["cafile"] == ca, link
    for node in NODES:
        agent = yaml.safe_load((state / f"agent-{node}.yaml").read_text())
        broker = agent["broker"]
        assert broker["tls"] is True, broker
        assert broker["ca_file"] == ca, broker
        assert broker["port"] == tls_ports[agent["site"]], broker
    return tls_ports


# a `fogmesh up` fleet of nodes edge-1..3: `leftovers` finds Docker objects by node name, so
# the fleets run one at a time (the dashboard's fleet too)
@pytest.mark.xdist_group("fogmesh-up-fleets")
@pytest.mark.timeout(300)
async def test_up_with_tls_end_to_end(tmp_path: Path) -> None:
    state = (tmp_path / "fleet").resolve()
    outputs = Outputs("e2e-tls-subscriber", tls=True)  # on the cloud's TLS listener
    async with fogmesh_up(state, *UP) as fleet:
        # "deployed" comes after every node is online: the agents are on their sites' TLS
        # listeners and the sites' links reach the cloud over TLS
        env = await asyncio.to_thread(fleet.deployed)
        tls_ports = _check_files(state, env)

        fleet.background(outputs.follow(env))
        await outputs.more(0, "outputs over TLS")

        # the CLI from fleet.env, over the cloud's TLS listener
        listed = await asyncio.to_thread(fleet_cli, env, "nodes")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        for node in NODES:
            assert node in listed.stdout, listed.stdout

        for name, port in tls_ports.items():  # plain MQTT to a TLS listener gets nowhere
            said = await _refused(env, port, None)
            assert said, name
        said = await _refused(env, tls_ports["cloud"], trusting(None))
        assert "CERTIFICATE_VERIFY_FAILED" in said  # refused by TLS, not by the login
        no_ca = {**env, "FOGMESH_BROKER_CA_FILE": ""}  # the CLI with the system's CAs only
        refused = await asyncio.to_thread(fleet_cli, no_ca, "nodes")
        assert refused.returncode != 0, refused.stdout
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr, refused

        # Ctrl-C before the duration runs out (a shorter one could end the fleet mid-check)
        await fleet.ctrl_c()
    assert "the sample app published" in fleet.text()
    assert leftovers(state, NODES) == []
