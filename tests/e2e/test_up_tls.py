"""``fogmesh up --tls`` as a user runs it: every node online over its site's TLS listener, the
sample app's outputs reach a subscriber on the cloud's TLS listener that trusts the fleet's CA
(from ``fleet.env``, as docs/security.md says), the CLI works from ``fleet.env`` over TLS, plain
TCP to a TLS listener and a client without the CA are refused, and Ctrl-C ends the fleet with
nothing left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from tests.e2e.fleet import OutputReader, leftovers, read_env, wait_for_file
from tests.support.buses import eventually

FOGMESH = str(Path(sys.executable).parent / "fogmesh")
NODES = ["edge-1", "edge-2", "edge-3"]
OUT = "fm/v1/data/demo/sensor-app/out"
UP = [
    FOGMESH,
    "up",
    "--tls",
    "--nodes",
    "3",
    "--runtime",
    "native",
    "--duration",
    "600",
    "--no-live",
]


def _trusting(ca_file: str | None) -> ssl.SSLContext:
    """A client context that trusts ``ca_file``, or only the system's CAs without one."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


def _client(env: dict[str, str], port: int, tls: ssl.SSLContext | None, name: str) -> Any:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=env["FOGMESH_USERNAME"],
        password=env["FOGMESH_PASSWORD"],
        identifier=f"e2e-tls-{name}",
        tls_context=tls,
        timeout=20,
    )


class Outputs:
    """Counts the sample app's ``out`` messages on the cloud's TLS listener."""

    def __init__(self) -> None:
        self.count = 0

    async def follow(self, env: dict[str, str]) -> None:
        tls = _trusting(env["FOGMESH_BROKER_CA_FILE"])
        async with _client(env, int(env["FOGMESH_TLS_PORT"]), tls, "subscriber") as client:
            await client.subscribe(OUT, qos=1)
            async for _message in client.messages:
                self.count += 1


async def _refused(env: dict[str, str], port: int, tls: ssl.SSLContext | None) -> str:
    """The error of a connection to ``port`` that must fail."""
    with pytest.raises(aiomqtt.MqttError) as caught:
        async with _client(env, port, tls, "refused"):
            pass
    return str(caught.value)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FOGMESH, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


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
    fleet = subprocess.Popen(
        [*UP, "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
    )
    out = OutputReader(fleet)
    outputs = Outputs()
    subscriber: asyncio.Task[None] | None = None
    try:
        # "deployed" comes after every node is online: the agents are on their sites' TLS
        # listeners and the sites' links reach the cloud over TLS
        await asyncio.to_thread(out.wait_for, "deployed sensor-app", 180, fleet)
        wait_for_file(state / "fleet.env", 10)
        env = read_env(state / "fleet.env")
        tls_ports = _check_files(state, env)

        subscriber = asyncio.create_task(outputs.follow(env))
        await eventually(lambda: outputs.count >= 3, timeout=90, what="outputs over TLS")

        # the CLI from fleet.env, over the cloud's TLS listener
        listed = await asyncio.to_thread(_cli, env, "nodes")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        for node in NODES:
            assert node in listed.stdout, listed.stdout

        for name, port in tls_ports.items():  # plain MQTT to a TLS listener gets nowhere
            said = await _refused(env, port, None)
            assert said, name
        said = await _refused(env, tls_ports["cloud"], _trusting(None))
        assert "CERTIFICATE_VERIFY_FAILED" in said  # refused by TLS, not by the login
        no_ca = {**env, "FOGMESH_BROKER_CA_FILE": ""}  # the CLI with the system's CAs only
        refused = await asyncio.to_thread(_cli, no_ca, "nodes")
        assert refused.returncode != 0, refused.stdout
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr, refused

        # Ctrl-C before the duration runs out (a shorter one could end the fleet mid-check)
        assert fleet.poll() is None, out.text()
        fleet.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(fleet.wait, 120) == 0, out.text()
    finally:
        if subscriber is not None:
            subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await subscriber
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()
    assert "the sample app published" in out.text()
    assert leftovers(state, NODES) == []
