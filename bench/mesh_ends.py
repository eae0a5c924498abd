"""The mesh bench's configurations, started: each one's site and cloud processes (fogmesh's
site broker and link, embedded amqtt or Mosquitto clouds, Mosquitto's own bridge as the peer)
and where the bench's clients connect."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.brokers import BrokerProcess, free_port, wait_port
from tests.support.mesh import MeshProcess
from tests.support.mesh_file import broker_spec, link_spec, port_of, write_mesh

__all__ = ["RULES", "Ends", "MosquittoBridge", "start_ends"]

RULES = [{"pattern": "b/#", "direction": "out", "qos": 1}]


def _let_mosquitto_persist(tmp: Path, workdir: Path) -> None:
    """Let Mosquitto write its database (the subscriber's session) into ``workdir``.

    Started as root, Mosquitto drops to the ``mosquitto`` user, which cannot write into a
    root-owned temporary directory: the session then dies with the broker and nothing queued
    for the subscriber during the partition is ever delivered.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        tmp.chmod(0o711)  # traversable
        workdir.chmod(0o777)  # writable by whichever user Mosquitto runs as


class MosquittoBridge:
    """A site Mosquitto bridging ``b/#`` out at QoS 1 to a cloud Mosquitto: the peer baseline.

    Persistent bridge session (``cleansession false``), its queue on disk like the cloud's, and
    a 1 s reconnect (fogmesh's link retries within about a second too).
    """

    def __init__(self, workdir: Path, cloud_port: int, *, bridge: bool = True) -> None:
        """``bridge=False``: the same site Mosquitto without its bridge (``links-only``, where
        fogmesh's link carries the rule; the queue limits of ``render-mosquitto``'s files)."""
        self.workdir = workdir
        self.bridge = bridge
        self.port = free_port()
        self.cloud_port = cloud_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MosquittoBridge:
        """Write the configuration and start Mosquitto; return once it listens."""
        _let_mosquitto_persist(self.workdir.parent, self.workdir)
        conf = self.workdir / "site.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "max_queued_messages 1000000\n"
            "set_tcp_nodelay true\n"
        )
        if self.bridge:
            conf.write_text(
                conf.read_text() + "connection wan\n"
                f"address 127.0.0.1:{self.cloud_port}\n"
                "topic b/# out 1\n"
                "cleansession false\n"
                "clientid site-wan\n"
                "restart_timeout 1\n"
                "bridge_attempt_unsubscribe false\n"
            )
        log = (self.workdir / "site.log").open("ab")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class Ends:
    """The processes of one configuration and where the bench's clients connect."""

    site: MeshProcess | MosquittoBridge
    site_port: int
    site_user: str | None
    cloud_port: int
    cloud_user: str | None
    mosq: BrokerProcess | None = None
    cloud: MeshProcess | None = None
    site_mosq: MosquittoBridge | None = None


def start_ends(kind: str, tmp: Path) -> Ends:
    """Start the site and cloud brokers of ``kind`` (amqtt or mosquitto cloud end behind a
    fogmesh site; ``peer``: Mosquitto's own bridge between two Mosquittos; ``links-only``:
    fogmesh's link alone, ``--no-broker`` between the same two Mosquittos as the peer)."""
    if kind == "links-only":
        _let_mosquitto_persist(tmp, tmp / "mosq")
        cloud_mosq = BrokerProcess("mosquitto", tmp / "mosq").start()
        # the site Mosquitto as the peer's, with render-mosquitto's queue limit (1,000,000):
        # a test broker's 100,000 dropped what a 5 s partition's publishers sent beyond it
        site_mosq = MosquittoBridge(tmp / "site-mosq", cloud_mosq.port, bridge=False).start()
        site_spec = broker_spec(tmp, "site", port=site_mosq.port, kind="mosquitto")
        only = link_spec("wan", "site", "cloud", RULES)
        only["remote"] = {"host": "127.0.0.1", "port": cloud_mosq.port}
        mesh = write_mesh(tmp / "mesh.yaml", {"site": site_spec}, [only])
        links = MeshProcess(mesh, "site", ["--no-broker"]).start()
        return Ends(
            links, site_mosq.port, None, cloud_mosq.port, None, mosq=cloud_mosq,
            site_mosq=site_mosq,
        )  # fmt: skip
    if kind in ("peer", "mosquitto"):
        _let_mosquitto_persist(tmp, tmp / "mosq")
        mosq = BrokerProcess("mosquitto", tmp / "mosq").start()
        if kind == "peer":
            bridge = MosquittoBridge(tmp / "site", mosq.port).start()
            return Ends(bridge, bridge.port, None, mosq.port, None, mosq=mosq)
        remote: dict[str, Any] = {"host": "127.0.0.1", "port": mosq.port}
        brokers = {"site": broker_spec(tmp, "site")}
    else:
        mosq = None
        remote = {"broker": "cloud", "username": "bridge", "password": "bridge-pw"}
        brokers = {"site": broker_spec(tmp, "site"), "cloud": broker_spec(tmp, "cloud")}
    link = link_spec("wan", "site", "cloud", RULES)
    link["remote"] = remote
    mesh = write_mesh(tmp / "mesh.yaml", brokers, [link])
    cloud = None
    if mosq is not None:
        cloud_port, cloud_user = mosq.port, None
    else:
        cloud = MeshProcess(mesh, "cloud").start()
        cloud_port, cloud_user = port_of(mesh, "cloud"), "svc"
    site = MeshProcess(mesh, "site").start()
    return Ends(site, port_of(mesh, "site"), "svc", cloud_port, cloud_user, mosq=mosq, cloud=cloud)
