"""One configuration of the WAN bench, running: its brokers, its agents' process and its relay,
and what the bench reads off the brokers (workloads running, the link's queue and counters)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import REPO
from wan_site import (
    PASSWORD,
    SITE,
    Config,
    agent_config,
    node_name,
    sample_app_workloads,
    site_mesh,
    sleeper,
)
from wan_tally import Relay

from tests.support.brokers import free_port, wait_port

__all__ = ["Run", "fresh_port"]

HERE = Path(__file__).resolve().parent
_HANDED_OUT: set[int] = set()


def fresh_port() -> int:
    """A port on 127.0.0.1 that nothing listens on and this run has not handed out before:
    every configuration picks its ports before any of them listens, and the kernel may offer
    one port twice (two brokers then race for it and one of them fails to start)."""
    while (port := free_port()) in _HANDED_OUT:
        pass
    _HANDED_OUT.add(port)
    return port


class Run:
    """The processes of one configuration and its relay."""

    user, password, link = "svc", PASSWORD, "cloud"
    """The account the bench reads and writes the brokers with, and the site link's name."""

    @property
    def hellos(self) -> int:
        """The hellos that cross the link once every agent has started."""
        return self.cfg.nodes

    def __init__(self, cfg: Config, base: Path, stagger: float, *, keep: bool = False) -> None:
        self.cfg, self.stagger = cfg, stagger
        self.root = base / cfg.key.replace("/", "_")
        self.root.mkdir(parents=True)
        self.cloud, self.site = self._ports()
        self.relay = Relay(self.cloud, fresh_port())
        if keep:
            self.relay.tally.trace = (self.root / "packets.txt").open("w")
        self.procs: list[subprocess.Popen[bytes]] = []

    def _ports(self) -> tuple[int, int]:
        """The cloud broker's port and the site broker's."""
        return fresh_port(), fresh_port()

    def _start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> None:
        with (self.root / f"{name}.log").open("ab") as log:
            self.procs.append(
                subprocess.Popen(
                    list(argv),
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=None if env is None else {**os.environ, **env},
                )
            )

    async def start(self) -> None:
        await self.relay.start()
        mesh = site_mesh(self.root, self.cloud, self.site, self.relay.port)
        broker = [
            sys.executable,
            "-m",
            "fogmesh.broker",
            "--log-level",
            "WARNING",
            "run",
            "--mesh",
            str(mesh),
            "--broker",
        ]
        self._start("cloud", *broker, "cloud")
        self._start("site", *broker, SITE)
        await asyncio.to_thread(wait_port, self.cloud, 60)
        await asyncio.to_thread(wait_port, self.site, 60)
        configs = [agent_config(self.cfg, self.root, self.site, i) for i in range(self.cfg.nodes)]
        self._start_agents(configs)
        for i in range(self.cfg.nodes):
            work = [sleeper(w) for w in range(self.cfg.workloads)]
            if self.cfg.sample_app and i == 0:
                work += sample_app_workloads()
            desired = {"node": node_name(i), "generation": 1, "workloads": work}
            await asyncio.to_thread(
                self._publish_cloud, f"fm/v1/nodes/{node_name(i)}/desired", json.dumps(desired)
            )

    def _start_agents(self, configs: list[dict[str, Any]]) -> None:
        """The agents' process (``--agents``), starting them spread over the stagger."""
        spec = self.root / "agents.json"
        at_once = self.cfg.design == "usage-at-once"
        busy = [configs[0]["state_dir"]] if self.cfg.sample_app else []  # the app's node
        spec.write_text(json.dumps({
            "stagger_s": self.stagger, "agents": configs, "usage_at_once": at_once, "busy": busy,
        }))  # fmt: skip
        self._start("agents", sys.executable, str(HERE / "wan.py"), "--agents", str(spec))

    def _mosquitto(self, tool: str, port: int, *args: str, check: bool = False) -> str:
        """Run ``mosquitto_pub`` or ``mosquitto_sub`` against the broker at ``port`` with the
        bench's account; what it printed."""
        argv = [tool, "-h", "127.0.0.1", "-p", str(port), "-u", self.user, "-P", self.password]
        done = subprocess.run(
            [*argv, *args], check=check, timeout=60, capture_output=True, text=True
        )
        return done.stdout

    def _publish_cloud(self, topic: str, payload: str) -> None:
        """Publish ``payload`` retained (QoS 1) on the cloud broker."""
        self._mosquitto("mosquitto_pub", self.cloud, "-q", "1", "-r", "-t", topic, "-m", payload,
                        check=True)  # fmt: skip

    def running(self) -> int:
        """Workloads running, as the nodes' retained actual states on the cloud say."""
        out = self._mosquitto("mosquitto_sub", self.cloud, "-t", "fm/v1/nodes/+/actual",
                              "-W", "3", "-v")  # fmt: skip
        count = 0
        for line in out.splitlines():
            _, _, payload = line.partition(" ")
            with contextlib.suppress(ValueError):
                data = json.loads(payload)
                count += sum(1 for w in data.get("workloads", []) if w.get("phase") == "running")
        return count

    def link_queue(self) -> int:
        """Messages the site's link still holds to cross (its retained status on the cloud)."""
        status = self._link_status(self.cloud)
        if status is None:
            return -1
        return int(status.get("queue_depth", 0)) + int(status.get("backlog", 0))

    def link_wire(self) -> tuple[int, int]:
        """The link's own count of the bytes on its remote sockets (out, in), from its status
        on the site broker (published there when they change, every 5 s at most)."""
        status = self._link_status(self.site)
        if status is None:
            return -1, -1
        return int(status.get("wire_bytes_out", -1)), int(status.get("wire_bytes_in", -1))

    def _link_status(self, port: int) -> dict[str, Any] | None:
        """The site link's retained status on the broker at ``port`` (None: none came)."""
        topic = f"fm/v1/mesh/{SITE}/links/{self.link}"
        out = self._mosquitto("mosquitto_sub", port, "-t", topic, "-W", "3", "-C", "1")
        try:
            status = json.loads(out)
        except ValueError:
            return None
        return status if isinstance(status, dict) else None

    def stop(self) -> None:
        """Stop the processes, then the workloads (which outlive their agent by design)."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        import psutil

        for shim in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if str(self.root) in " ".join(shim.info["cmdline"] or []):
                    for child in shim.children(recursive=True):
                        child.kill()
                    shim.kill()
