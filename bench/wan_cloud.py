"""The WAN bench's cloud tier: a configuration run as ``fogmesh up`` runs its fleet, against
the previous design's link rules (its baseline)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from wan_run import Run, fresh_port
from wan_site import SITE, Config

from fogmesh.cli.fleet.plan import link_rules
from tests.support.brokers import wait_port

__all__ = ["NARROWED", "CloudRun", "previous_link_rules"]


NARROWED = ("api", "ops", "reply")
"""The trees whose directions the previous design's link rules already narrowed."""


def previous_link_rules(site: str) -> list[dict[str, Any]]:
    """The previous design's WAN link rules (the cloud configurations' baseline): today's for
    the requests and replies, and every other tree of the topic catalogue both ways."""
    from fogmesh.protocol.catalogue import CATALOGUE

    trees = sorted({spec.pattern.split("/")[2] for spec in CATALOGUE} - set(NARROWED))
    kept = [r for r in link_rules(site) if r["pattern"].split("/")[2] in NARROWED]
    return kept + [{"pattern": f"fm/v1/{tree}/#", "direction": "both", "qos": 1} for tree in trees]


class CloudRun(Run):
    """A configuration with the cloud tier as ``fogmesh up`` runs it: the fleet plan's mesh
    (a cloud and two site brokers, its WAN link rules), accounts and service configs
    (:class:`fogmesh.cli.fleet.plan.FleetPlan`), the services ``fogmesh up`` starts on the
    cloud (registry, scheduler, migrator, artefact store) and on each site (migrator, artefact
    cache), and ``nodes`` idle agents on each site (the plan's agent configs with the agent's
    own longest heartbeat gap, as on a WAN). Only ``site-a``'s link dials the cloud
    through the relay: its bytes are the figure, the other site's traffic crossing it included.
    The baseline (``previous``) is the same fleet with the previous design's link rules."""

    link = f"{SITE}-cloud"

    def __init__(self, cfg: Config, base: Path, stagger: float, *, keep: bool = False) -> None:
        from fogmesh.cli.fleet.plan import FleetPlan

        self.plan = FleetPlan.make(base / cfg.key.replace("/", "_") / "fleet", 2 * cfg.nodes,
                                   "native")  # fmt: skip
        # the plan's ports are the kernel's, picked before any configuration listens
        self.plan.ports = {name: fresh_port() for name in self.plan.ports}
        super().__init__(cfg, base, stagger, keep=keep)
        self.user, self.password = "operator", self.plan.accounts["operator"].password

    @property
    def hellos(self) -> int:
        """This site's nodes' hellos go up (with the previous rules the other site's come down)."""
        return self.cfg.nodes * (2 if self.cfg.design == "previous" else 1)

    def _ports(self) -> tuple[int, int]:
        return self.plan.ports["cloud"], self.plan.ports[SITE]

    def _mesh(self) -> Path:
        mesh = self.plan.mesh()
        for link in mesh["links"]:
            if self.cfg.design == "previous":
                link["rules"] = previous_link_rules(link["broker"])
            if link["broker"] == SITE:
                remote = link["remote"]
                remote.pop("broker")
                link["remote"] = {"host": "127.0.0.1", "port": self.relay.port, **remote}
        path = self.root / "mesh.json"
        path.write_text(json.dumps(mesh))
        return path

    async def start(self) -> None:
        from fogmesh.cli.fleet.plan import SITES

        await self.relay.start()
        paths = self.plan.write_files()
        mesh = self._mesh()
        for name in ("cloud", *SITES):
            self._start(name, sys.executable, "-m", "fogmesh.broker", "--log-level", "WARNING",
                        "run", "--mesh", str(mesh), "--broker", name)  # fmt: skip
        for name in ("cloud", *SITES):
            await asyncio.to_thread(wait_port, self.plan.ports[name], 60)
        # what fogmesh up starts (fleet/command.py, start_services), by the same commands
        for spec in self.plan.registries():
            self._start(spec.name, sys.executable, "-m", spec.module, *spec.args, env=spec.env)
        for name in self.plan.schedulers():
            self._start(name, sys.executable, "-m", "fogmesh.scheduler", "--config",
                        str(paths[name]))  # fmt: skip
        migrator = str(Path(sys.executable).parent / "fogmesh-migrator")
        for name in ("migrator", *(f"migrator-{site}" for site in SITES)):
            self._start(name, migrator, "--config", str(paths[name]))
        self._start("artefacts", sys.executable, "-m", "fogmesh.artefacts", "store",
                    "--config", str(paths["artefacts"]))  # fmt: skip
        for site in SITES:
            name = f"artefact-cache-{site}"
            self._start(name, sys.executable, "-m", "fogmesh.artefacts", "cache",
                        "--config", str(paths[name]))  # fmt: skip
        configs = []
        for node in self.plan.nodes:
            config = self.plan.agent_config(node)
            # the agent's longest heartbeat gap, a WAN fleet's (not the one-machine demo's)
            config.pop("heartbeat_max_interval_s")
            config.update(
                runtimes=["native"], native_isolation="agent-user", native_cgroup_parent=None,
                log_level=os.environ.get("FOGMESH_BENCH_LOG", "warning"),
            )  # fmt: skip
            configs.append(config)
        self._start_agents(configs)
