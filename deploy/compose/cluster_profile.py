"""The cluster profile of configure.py (``--profile cluster``): everything on one machine's
network (compose ``network_mode: host``), ports chosen free at configure time.

The fleet is ``fogmesh up --profile cluster``'s (:class:`fogmesh.cli.fleet.cluster.
ClusterFleetPlan`): a NATS cloud cluster of three members (``fogmesh-broker render-nats``'s
configuration, every password quoted in ``nats/accounts.conf``, each member's JetStream store in
the cloud volume), two registries (each ingesting the whole fleet, each on a member of its own)
into PostgreSQL (a server of your own: ``FOGMESH_REGISTRY_DB``), two schedulers (state dirs of
their own: their apps are on the bus), the migrator, the two sites' brokers linked to the
cluster's first member, and an agent per site. Services fail over between members
(``broker.failover``). Only where files live differs: in the containers' volumes. Also writes
``sample-app.yaml``, the sample app to deploy (``fogmesh deploy`` as the tenant).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fogmesh.cli.fleet.cluster import ClusterFleetPlan
from fogmesh.cli.fleet.plan import APP, TENANT, write_private
from fogmesh.cli.fleet.sample import SAMPLE_IMAGE, sample_manifest
from fogmesh.service import BROKER_ENV

__all__ = ["configure_cluster"]

DATA = "/var/lib/fogmesh"


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


def configure_cluster(out: Path, nodes: int) -> tuple[ClusterFleetPlan, dict[str, str]]:
    """Write the cluster profile's files into ``out``; return the plan and the compose
    variables (ports) for ``cluster.env``."""
    plan = ClusterFleetPlan.make(out, nodes, "docker")
    mesh = plan.mesh()
    for name, spec in mesh["brokers"].items():
        spec["data_dir"] = f"{DATA}/cloud" if name == "cloud" else f"{DATA}/broker-{name}"
    write_private(out / "mesh.yaml", yaml.safe_dump(mesh, sort_keys=False))
    plan.render_cloud(mesh, out / "nats")

    for i in range(1, len(plan.schedulers()) + 1):
        scheduler = plan.scheduler_config(i) | {"state_dir": f"{DATA}/scheduler-{i}"}
        write_private(out / f"scheduler-{i}.yaml", yaml.safe_dump(scheduler))
    write_private(out / "migrator.yaml", yaml.safe_dump(plan.migrator_config()))
    for i, (name, port) in enumerate(plan.registry_ports().items(), 1):
        # Not --share: with it, on nats-server 2.9.10, no node came online in 180 s (without
        # it the profile's test passes), so both ingest every message into the one database
        account = plan.accounts[name]
        settings = {"host": "127.0.0.1", "port": port, "username": account.username,
                    "password": account.password, "client_id": name}  # fmt: skip
        env = "".join(f"{BROKER_ENV[k]}={v}\n" for k, v in settings.items())
        write_private(out / f"registry-{i}.env", env)
    for node in plan.nodes:
        agent = plan.agent_config(node) | {"state_dir": "/var/lib/fogmesh-agent"}
        write_private(out / f"agent-{node.node}.yaml", yaml.safe_dump(agent, sort_keys=False))
    write_private(out / "sample-app.yaml", yaml.safe_dump(_sample_app(), sort_keys=False))
    ports = {f"FOGMESH_{s.upper().replace('-', '_')}_PORT": str(p) for s, p in plan.ports.items()}
    return plan, ports
