"""The WAN bench's configurations and what each one's site is made of: the site's mesh file
(a cloud and a site broker joined by a WAN link with ``fogmesh up``'s rules), its agents'
configs and the workloads their desired states place."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fogmesh.broker.passwords import hash_password
from fogmesh.cli.fleet.plan import link_rules

__all__ = [
    "APP_DESIGNS",
    "PASSWORD",
    "SITE",
    "Config",
    "agent_config",
    "configurations",
    "node_name",
    "sample_app_workloads",
    "site_mesh",
    "sleeper",
]

PASSWORD = "bench-pw"  # noqa: S105 -- a throwaway account of the bench's own brokers
SITE = "site-a"

APP_DESIGNS = ("on-change", "usage-at-once", "previous")
"""The sample app's agents: today's heartbeats, the same with usage news at every sampling tick
(the design before the usage wait: the baseline), and the previous design (every tick)."""


@dataclass
class Config:
    nodes: int
    workloads: int
    design: str  # "on-change" or "previous" (the agents'); with ``cloud``, the link rules'
    sample_app: bool = False
    cloud: bool = False
    """The cloud tier as ``fogmesh up`` runs it (:class:`wan_cloud.CloudRun`), the nodes idle."""

    @property
    def key(self) -> str:
        app = "-app" if self.sample_app else ""
        tier = "cloud-" if self.cloud else ""
        return f"{tier}{self.design}{app}/{self.nodes}n/{self.workloads}w"


def configurations(*, sample_app: bool, cloud: bool, only: list[str] | None) -> list[Config]:
    """The run's configurations: the idle sites, then those the options add, those whose key
    has one of ``only`` (when given)."""
    configs = [Config(n, w, d) for d in ("on-change", "previous") for n in (1, 10) for w in (0, 20)]
    if sample_app:
        configs += [Config(n, 0, d, sample_app=True) for d in APP_DESIGNS for n in (1, 10)]
    if cloud:
        configs += [Config(n, 0, d, cloud=True) for d in ("lean", "previous") for n in (1, 10)]
    if only:
        configs = [c for c in configs if any(o in c.key for o in only)]
    return configs


def site_mesh(root: Path, cloud: int, site: int, relay: int) -> Path:
    """The mesh file of a cloud and a site broker, the site's WAN link dialling the cloud
    through the relay's port."""
    digest = hash_password(PASSWORD)
    users = [
        {"username": "bridge", "password_hash": digest, "role": "bridge"},
        {"username": "svc", "password_hash": digest, "role": "service"},
    ]

    def broker(name: str, port: int) -> dict[str, Any]:
        return {
            "listeners": [{"name": "default", "port": port}],
            "data_dir": str(root / name),
            "users": users,
        }

    cred = {"username": "bridge", "password": PASSWORD}
    link = {
        "name": "cloud",
        "broker": SITE,
        "kind": "wan",
        "local": cred,
        "remote": {"host": "127.0.0.1", "port": relay, **cred},
        "rules": link_rules(SITE),
    }
    mesh = {"brokers": {"cloud": broker("cloud", cloud), SITE: broker(SITE, site)}, "links": [link]}
    path = root / "mesh.json"
    path.write_text(json.dumps(mesh))
    return path


def node_name(i: int) -> str:
    return f"{SITE}-node-{i:02d}"


def agent_config(cfg: Config, root: Path, site_port: int, i: int) -> dict[str, Any]:
    """The ``i``-th node's agent config (native runtime; heartbeats as ``cfg``'s design)."""
    return {
        "node_id": node_name(i),
        "site": SITE,
        "state_dir": str(root / node_name(i)),
        "broker": {"host": "127.0.0.1", "port": site_port, "username": "svc", "password": PASSWORD},
        "runtimes": ["native"],
        "native_isolation": "agent-user",
        "native_cgroup_parent": None,
        "heartbeat_on_change": cfg.design != "previous",
        "log_level": os.environ.get("FOGMESH_BENCH_LOG", "warning"),
        "workload_env": {
            "FM_BROKER_HOST": "127.0.0.1",
            "FM_BROKER_PORT": str(site_port),
            "FM_USERNAME": "svc",
            "FM_PASSWORD": PASSWORD,
        },
    }


def sleeper(i: int) -> dict[str, Any]:
    """An idle workload: a ``sleep`` process."""
    return {
        "name": f"idle-{i:02d}",
        "tenant": "acme",
        "app": "idle",
        "component": f"s{i:02d}",
        "runtime": "native",
        "executable": "/bin/sleep",
        "command": ["infinity"],
    }


def sample_app_workloads() -> list[dict[str, Any]]:
    """The paper's sample app (sensor and convolver), native."""

    def comp(name: str) -> dict[str, Any]:
        return {
            "name": f"sensor-app-{name}-0",
            "tenant": "acme",
            "app": "sensor-app",
            "component": name,
            "runtime": "native",
            "executable": sys.executable,
            "command": ["-m", f"fogmesh_sample.{name}"],
            "env": {"FM_TENANT": "acme", "FM_APP": "sensor-app", "FM_LOG_LEVEL": "warning"},
        }

    return [comp("sensor"), comp("convolve")]
