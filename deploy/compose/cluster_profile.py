"""The cluster profile of configure.py (``--profile cluster``): everything on one machine's
network (compose ``network_mode: host``), ports chosen free at configure time.

A NATS cloud cluster of three members (``fogmesh-broker render-nats``'s configuration, each
member's JetStream store in the cloud volume), PostgreSQL for the registries (a server of your
own: ``FOGMESH_REGISTRY_DB``), two registries (each ingesting the whole fleet), two schedulers
(state dirs of their own: their apps are on the bus), the migrator, the two sites' brokers
linked to the cluster's first member, and an agent per site. Services fail over between members
(``broker.failover``). Also writes ``sample-app.yaml``, the sample app to deploy (``fogmesh
deploy`` as the tenant).
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
from pathlib import Path
from typing import Any

import yaml

from fogmesh.broker.config import MeshSpec
from fogmesh.broker.nats import password_env, render_nats
from fogmesh.cli.fleet.plan import APP, TENANT, Account, FleetPlan, free_port
from fogmesh.cli.fleet.sample import SAMPLE_IMAGE, sample_manifest
from fogmesh.service import BROKER_ENV

__all__ = ["configure_cluster"]

DATA = "/var/lib/fogmesh"
MEMBERS = 3


def _member(i: int) -> dict[str, Any]:
    return {
        "name": f"cloud-{i}", "host": "127.0.0.1", "mqtt_port": free_port(),
        "client_port": free_port(), "route_port": free_port(), "monitor_port": free_port(),
    }  # fmt: skip


def _sample_app() -> dict[str, Any]:
    """``fogmesh up``'s sample app with both components as containers of the sample image: a
    native workload needs ``useradd`` for its tenant's account, which the agent image lacks."""
    manifest = sample_manifest(TENANT, APP, "docker").model_dump(mode="json", exclude_none=True)
    for comp in manifest["components"]:
        if comp["name"] == "sensor":
            comp.update(runtime="docker", image=SAMPLE_IMAGE)
            comp.pop("executable", None)
            comp["command"] = ["python3", *comp["command"]]
    return manifest


def configure_cluster(
    out: Path, args: argparse.Namespace, write: Any
) -> tuple[FleetPlan, dict[str, str]]:
    """Write the cluster profile's files into ``out`` with ``write(path, text)``; return the
    plan and the compose variables (ports) for ``cluster.env``."""
    plan = FleetPlan.make(out, args.nodes, "docker")
    for name in ("scheduler-2", "registry-2"):  # the second replicas' own accounts
        plan.accounts[name] = Account(name, "", "service")
    # nats-server reads each password from its environment as a config token: one that starts
    # with a digit is taken for a number and the member refuses to start, so letters first
    for name, account in plan.accounts.items():
        plan.accounts[name] = dataclasses.replace(account, password=f"fm{secrets.token_hex(12)}")
    mesh = plan.mesh()
    members = [_member(i) for i in range(1, MEMBERS + 1)]
    first = members[0]["mqtt_port"]
    cloud = mesh["brokers"]["cloud"]
    cloud.update(
        kind="nats", data_dir=f"{DATA}/cloud",
        listeners=[{"name": "default", "host": "127.0.0.1", "port": first}],
        cluster={"name": "fogmesh-cloud", "replicas": MEMBERS, "members": members},
    )  # fmt: skip
    for name, spec in mesh["brokers"].items():
        if name != "cloud":
            spec["data_dir"] = f"{DATA}/broker-{name}"
    for link in mesh["links"]:
        link["remote"].pop("broker", None)
        link["remote"].update(host="127.0.0.1", port=first)
        # NATS's gateway speaks QoS 0 and 1 only, and MQTT 3.1.1
        link["rules"] = [dict(r, qos=min(int(r.get("qos", 1)), 1)) for r in link["rules"]]
    write(out / "mesh.yaml", yaml.safe_dump(mesh, sort_keys=False))
    render_nats(MeshSpec.model_validate(mesh), "cloud", out / "nats")
    cloud_users = [u["username"] for u in cloud["users"]]
    write(
        out / "nats.env",
        "".join(f"{password_env(u)}={plan.accounts[u].password}\n" for u in cloud_users),
    )
    failover = [f"127.0.0.1:{m['mqtt_port']}" for m in members[1:]]

    def broker(account: str, port: int = first, **extra: Any) -> dict[str, Any]:
        a = plan.accounts[account]
        return {"host": "127.0.0.1", "port": port, "username": a.username,
                "password": a.password, **extra}  # fmt: skip

    for i, name in enumerate(("scheduler", "scheduler-2"), 1):
        sched = {
            "client_id": name, "state_dir": f"{DATA}/scheduler-{i}",
            "heartbeat_interval_s": 2.0, "broker": broker(name, failover=failover),
        }  # fmt: skip
        write(out / f"scheduler-{i}.yaml", yaml.safe_dump(sched))
    migrator = plan.migrator_config()
    migrator["broker"] = broker("migrator", failover=failover)
    write(out / "migrator.yaml", yaml.safe_dump(migrator))
    for i, name in enumerate(("registry", "registry-2"), 1):
        # each registry on its own member. Not --share: with it, on nats-server 2.9.10, no
        # node came online in 180 s (without it the profile's test passes), so both ingest
        # every message into the one database: double work, not wrong
        port = members[i - 1]["mqtt_port"]
        env = {BROKER_ENV[k]: str(v) for k, v in broker(name, port, client_id=name).items()}
        write(out / f"registry-{i}.env", "".join(f"{k}={v}\n" for k, v in env.items()))
    for node in plan.nodes:
        _, port = plan.broker_of(node.site)
        agent = plan.agent_config(node)
        agent["broker"] = broker(node.node, port)
        agent["state_dir"] = "/var/lib/fogmesh-agent"
        write(out / f"agent-{node.node}.yaml", yaml.safe_dump(agent, sort_keys=False))
    write(out / "sample-app.yaml", yaml.safe_dump(_sample_app(), sort_keys=False))
    sites = {s: p for s, p in plan.ports.items() if s != "cloud"}
    ports = {f"FOGMESH_{s.upper().replace('-', '_')}_PORT": str(p) for s, p in sites.items()}
    return plan, {"FOGMESH_CLOUD_PORT": str(first), **ports}
