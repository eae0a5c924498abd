"""A three-member ``nats-server`` cluster on loopback, started exactly from the files
``fogmesh-broker render-nats`` writes (the cloud broker of a mesh file with a ``site`` too).

Used by the cluster's own tests (``tests/broker/test_nats_cluster.py``) and by the registry
replicas' (``tests/registry/test_replicas.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from fogmesh.broker.nats import password_env
from tests.support.brokers import REPO, free_port
from tests.support.mesh_file import PASSWORDS, broker_spec, link_spec, write_mesh
from tests.support.mqtt import client

__all__ = ["RULES", "Cluster", "Member", "cluster_mesh", "nats_cluster", "wait_ready"]

RULES = [
    {"pattern": "tele/#", "direction": "out", "qos": 1},
    {"pattern": "cmd/#", "direction": "in", "qos": 1},
]
"""The site link's rules in the cluster's mesh file."""


@dataclass
class Member:
    """One rendered member: its config file, ports and process."""

    conf: Path
    mqtt_port: int
    monitor_port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self, log: Path) -> None:
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(exe).exists():
            pytest.fail("nats-server is not installed; .ci/run installs it")
        env = {**os.environ, **{password_env(u): pw for u, pw in PASSWORDS.items()}}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [exe, "-c", str(self.conf)], stdout=out, stderr=out, env=env
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no goodbye, nothing flushed
            self.proc.wait()

    def healthy(self) -> bool:
        """The monitor's /healthz says ok (serving, JetStream enabled and current)."""
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(json.load(resp).get("status") == "ok")
        except (OSError, ValueError):
            return False


@dataclass
class Cluster:
    """The mesh file and the three running members."""

    mesh: Path
    members: list[Member]

    @property
    def ports(self) -> list[int]:
        """The members' MQTT ports."""
        return [m.mqtt_port for m in self.members]


def cluster_mesh(tmp: Path) -> tuple[Path, list[dict[str, Any]]]:
    members: list[dict[str, Any]] = [
        {
            "name": f"cloud-{i}",
            "mqtt_port": free_port(),
            "client_port": free_port(),
            "route_port": free_port(),
            "monitor_port": free_port(),
        }
        for i in range(1, 4)
    ]
    cloud = broker_spec(
        tmp,
        "cloud",
        port=members[0]["mqtt_port"],  # where links reach the cluster: its first member
        kind="nats",
        cluster={"name": "fogmesh-cloud", "replicas": 3, "members": members},
    )
    mesh = write_mesh(
        tmp / "mesh.yaml",
        {"cloud": cloud, "site": broker_spec(tmp, "site")},
        [link_spec("wan", "site", "cloud", RULES)],
    )
    return mesh, members


@contextlib.contextmanager
def nats_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Render with the CLI and start ``nats-server -c member-N.conf`` for each member; every
    member is SIGKILLed at the end."""
    mesh, specs = cluster_mesh(tmp_path)
    out = tmp_path / "nats"
    rendered = subprocess.run(
        [
            *(sys.executable, "-m", "fogmesh.broker", "render-nats", "--mesh", str(mesh)),
            *("--broker", "cloud", "--out", str(out), "--members", "3"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    members = [
        Member(out / f"member-{i + 1}.conf", s["mqtt_port"], s["monitor_port"])
        for i, s in enumerate(specs)
    ]
    for i, member in enumerate(members):
        member.start(tmp_path / f"member-{i + 1}.log")
    try:
        yield Cluster(mesh, members)
    finally:
        for member in members:
            member.kill()


async def _mqtt_ready(port: int) -> bool:
    """An MQTT session with a QoS 1 subscription works on ``port`` (JetStream answers)."""
    try:
        async with client(port, "svc") as c:
            await c.subscribe("fm/v1/probe/#", qos=1, timeout=5)
        return True
    except (aiomqtt.MqttError, TimeoutError):
        return False


async def wait_ready(cluster: Cluster, timeout: float = 120) -> None:
    """Until every member is healthy and its MQTT gateway grants a QoS 1 subscription."""
    deadline = time.monotonic() + timeout
    for member in cluster.members:
        while not await asyncio.to_thread(member.healthy):
            assert time.monotonic() < deadline, "the cluster never became healthy"
            await asyncio.sleep(0.2)
    for member in cluster.members:
        while not await _mqtt_ready(member.mqtt_port):
            assert time.monotonic() < deadline, "the MQTT gateway never answered"
            await asyncio.sleep(0.5)
