"""The registry bench's processes of one run: the broker (one Mosquitto or the three-member
NATS cluster), the registry replicas (``fogmesh-registry``) and the simulators
(``registry_sim.py``), started and stopped by :class:`Fleet` for ``bench/registry.py``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import RESULTS

from tests.support.brokers import free_port, wait_port
from tests.support.mesh_file import PASSWORDS
from tests.support.nats_cluster import Cluster, nats_cluster, wait_ready

__all__ = ["SIMULATOR", "SIM_PROCS", "Fleet"]

SIMULATOR = Path(__file__).with_name("registry_sim.py")
SIM_PROCS = 2


@dataclass
class Fleet:
    """The broker, the registry and the simulators of one run (stopped in reverse order).

    ``broker``: ``mosquitto`` (one, anonymous) or ``nats`` (the three-member cluster of
    ``tests/support/nats_cluster.py``, rendered by ``fogmesh-broker render-nats``, with the test
    accounts: every client here is ``svc``). On the cluster, replica ``i`` connects to member
    ``i % 3`` and the simulators spread over the members, and replicas split the fleet with
    ``--share-by registry`` (NATS 2.9 has no shared subscriptions)."""

    nodes: int
    interval: float
    db_url: str
    workdir: Path
    port: int = field(default_factory=free_port)
    replicas: int = 1
    broker: str = "mosquitto"
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    registry: subprocess.Popen[bytes] | None = None
    registries: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sims: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cluster: Cluster | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The account of every client on the cluster (None: Mosquitto, anonymous)."""
        return ("svc", PASSWORDS["svc"]) if self.broker == "nats" else None

    async def start_broker_and_registry(self) -> None:
        if self.broker == "nats":
            self.cluster = self._stack.enter_context(nats_cluster(self.workdir))
            await wait_ready(self.cluster)
            self.ports = self.cluster.ports
            self.port = self.ports[0]
        else:
            self.start_mosquitto()
        self.start_registries()

    def start_mosquitto(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        # The registry acknowledges a QoS 1 message once it has handled it; Mosquitto's default
        # window of 20 unacknowledged messages per client then bounds a join storm by round
        # trips, which a loaded machine makes long. A cloud broker gives the registry more.
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 1000000\nmax_inflight_messages 1000\n"
        )
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        broker_log = (RESULTS / f"mosquitto-{self.nodes}.log").open("wb")
        self.procs.append(subprocess.Popen([exe, "-c", str(conf)], stderr=broker_log))
        wait_port(self.port)
        self.ports = [self.port]

    def start_registries(self) -> None:
        for i in range(self.replicas):
            log = (RESULTS / f"registry-{self.nodes}-{i}.log").open("wb")
            cid = "registry-bench" if self.replicas == 1 else f"registry-bench-{i}"
            port = self.ports[i % len(self.ports)]
            args = ["--port", str(port), "--db", self.db_url, "--client-id", cid]
            args += ["--default-interval", str(self.interval), "--log-level", "warning"]
            if self.credentials is not None:
                args += ["--username", self.credentials[0], "--password", self.credentials[1]]
            if self.replicas > 1:
                args += ["--share", "registry"]
                if self.broker == "nats":
                    args += ["--share-by", "registry"]
            code = "from fogmesh.registry.cli import main; main()"
            proc = subprocess.Popen([sys.executable, "-c", code, *args], stderr=log)
            self.registries.append(proc)
            self.procs.append(proc)
        self.registry = self.registries[0]

    def start_simulators(self, prefix: str) -> None:
        until = time.time() + 600
        per = -(-self.nodes // SIM_PROCS)
        env = dict(os.environ)
        if self.credentials is not None:
            env["FOGMESH_USERNAME"], env["FOGMESH_PASSWORD"] = self.credentials
        for j, first in enumerate(range(0, self.nodes, per)):
            count = min(per, self.nodes - first)
            port = self.ports[(j + 1) % len(self.ports)]
            argv = [str(port), prefix, str(first), str(count), str(self.interval), str(until)]
            cmd = [sys.executable, str(SIMULATOR), *argv]
            self.sims.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env))
        self.procs += self.sims

    def stop(self) -> float:
        """Stop everything; return how late the simulators' heartbeat wheel ran at worst."""
        for proc in self.sims + list(reversed(self.procs)):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        late = 0.0
        for proc in self.procs:
            try:
                out, _ = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc in self.sims and out:
                with contextlib.suppress(ValueError, KeyError):
                    late = max(late, json.loads(out.splitlines()[-1])["max_late_s"])
        self._stack.close()  # the cluster's members, last
        return late
