"""Write the configuration of deploy/compose/cloud.yaml and site.yaml into one directory.

    python deploy/compose/configure.py OUT [--nodes N] [--cloud-host H] [--cloud-port P]
        [--site-port P] [--profile cluster]

The accounts, passwords and the mesh are ``fogmesh up``'s (:class:`fogmesh.cli.fleet.plan.
FleetPlan`: a cloud and two sites, site-a and site-b, services, bridges, one node account per
agent, the tenant ``demo``), moved from one machine's loopback onto the compose networks: every
broker listens on 0.0.0.0:1883 in its container, the services reach the cloud broker as
``broker``, an agent its site broker as ``broker``, a site broker's link reaches the cloud at
``--cloud-host``:``--cloud-port`` (the cloud machine's published port; the site compose file
maps the name ``fogmesh-cloud`` to $FOGMESH_CLOUD_ADDR, the docker host by default).

Writes OUT/mesh.yaml, scheduler.yaml, migrator.yaml, agent-edge-N.yaml, registry.env and
fleet.env (the CLI's variables, for the cloud's published port on this machine), all 0600 (they
hold passwords; the containers read them as root). Needs fogmesh installed (the repo's venv).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml
from cluster_profile import configure_cluster

from fogmesh.cli.fleet.plan import SITES, FleetPlan, write_private
from fogmesh.service import BROKER_ENV

BROKER_PORT = 1883
DATA = "/var/lib/fogmesh"


def _broker(plan: FleetPlan, account: str) -> dict[str, Any]:
    a = plan.accounts[account]
    return {"host": "broker", "port": BROKER_PORT, "username": a.username, "password": a.password}


def configure(out: Path, args: argparse.Namespace) -> FleetPlan:
    """Make the plan and write every file."""
    plan = FleetPlan.make(out, args.nodes, "docker")
    mesh = plan.mesh()
    for name, broker in mesh["brokers"].items():
        broker["listeners"] = [{"name": "tcp", "host": "0.0.0.0", "port": BROKER_PORT}]  # noqa: S104
        broker["data_dir"] = f"{DATA}/broker-{name}"
    for link in mesh["links"]:
        remote = link["remote"]
        remote.pop("broker", None)
        remote.update(host=args.cloud_host, port=args.cloud_port)
    write_private(out / "mesh.yaml", yaml.safe_dump(mesh, sort_keys=False))

    scheduler = plan.scheduler_config()
    for key in ("host", "port", "username", "password"):
        scheduler.pop(key, None)
    scheduler.update(broker=_broker(plan, "scheduler"), state_dir=f"{DATA}/scheduler")
    write_private(out / "scheduler.yaml", yaml.safe_dump(scheduler))
    migrator = plan.migrator_config()
    migrator["broker"] = _broker(plan, "migrator")
    write_private(out / "migrator.yaml", yaml.safe_dump(migrator))

    for node in plan.nodes:
        agent = plan.agent_config(node)
        agent["broker"] = _broker(plan, node.node)
        agent["state_dir"] = "/var/lib/fogmesh-agent"
        # docker workloads run on the host's network: they reach the site broker where the
        # site compose file publishes it
        agent["workload_env"].update(FM_BROKER_HOST="127.0.0.1", FM_BROKER_PORT=str(args.site_port))
        write_private(out / f"agent-{node.node}.yaml", yaml.safe_dump(agent, sort_keys=False))

    settings = {**_broker(plan, "registry"), "port": str(BROKER_PORT), "client_id": "registry"}
    env = {BROKER_ENV[k]: v for k, v in settings.items()}
    write_private(out / "registry.env", "".join(f"{k}={v}\n" for k, v in env.items()))
    _cli_env(out, plan, args.cloud_port)
    return plan


def _cli_env(out: Path, plan: FleetPlan, cloud_port: int) -> None:
    """fleet.env: the CLI's variables for the cloud broker at 127.0.0.1:``cloud_port``."""
    op, tenant = plan.accounts["operator"], plan.accounts["demo"]
    cli = {
        "FOGMESH_BROKER": f"127.0.0.1:{cloud_port}",
        "FOGMESH_USERNAME": op.username,
        "FOGMESH_PASSWORD": op.password,
        "FOGMESH_TENANT": "demo",
        "FOGMESH_TENANT_USERNAME": tenant.username,
        "FOGMESH_TENANT_PASSWORD": tenant.password,
    }
    lines = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in cli.items())
    write_private(out / "fleet.env", lines)


def main() -> None:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--nodes", type=int, default=len(SITES), help="agents, spread over sites")
    parser.add_argument("--cloud-host", default="fogmesh-cloud")
    parser.add_argument("--cloud-port", type=int, default=1883)
    parser.add_argument("--site-port", type=int, default=1884)
    parser.add_argument(
        "--profile", choices=["compose", "cluster"], default="compose",
        help="cluster: cluster.yaml's files (NATS x3, replicas; cluster_profile.py)",
    )  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    plan: FleetPlan
    if args.profile == "cluster":
        plan, ports = configure_cluster(args.out, args.nodes)
        write_private(args.out / "cluster.env", "".join(f"{k}={v}\n" for k, v in ports.items()))
        _cli_env(args.out, plan, int(ports["FOGMESH_CLOUD_PORT"]))
    else:
        plan = configure(args.out, args)
    # which node goes with which site (FOGMESH_NODE, FOGMESH_SITE of site.yaml)
    sys.stdout.write("".join(f"{node.node} {node.site}\n" for node in plan.nodes))


if __name__ == "__main__":
    main()
