"""What ``fogmesh up`` starts: ports, nodes, accounts, and the files each process reads.

Three brokers (a cloud and two sites) are joined by WAN links; the registry, the scheduler and
the migrator (when installed) talk to the cloud broker; the node agents are spread over the
sites. Every process has its own account on the brokers (ACL roles ``service``, ``bridge``,
``node``, ``tenant``), with random passwords written only into the fleet's state directory.
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fogmesh.broker.passwords import hash_password
from fogmesh.protocol.artefacts import cache_duty
from fogmesh.protocol.topics import NodeChannel

__all__ = [
    "LOCAL_TREES",
    "Account",
    "FleetPlan",
    "NodePlan",
    "ProcessSpec",
    "free_port",
    "link_rules",
    "write_private",
]

SITES = ("site-a", "site-b")
TENANT = "demo"
APP = "sensor-app"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Account:
    """A broker account: username, password and ACL role."""

    username: str
    password: str
    role: str
    node: str | None = None
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class NodePlan:
    """One node agent: its id and the site broker it joins."""

    node: str
    site: str


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """A service process to start: ``python -m module args`` with ``env`` added."""

    name: str
    module: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class FleetPlan:
    """Everything ``fogmesh up`` decides before starting a process."""

    state_dir: Path
    nodes: list[NodePlan]
    runtime: str  # "docker" or "native"
    ports: dict[str, int] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    fleet_id: str = field(default_factory=lambda: secrets.token_hex(4))
    """Marks everything this fleet starts (containers, processes), so teardown takes only it."""

    @classmethod
    def make(cls, state_dir: Path, node_count: int, runtime: str) -> FleetPlan:
        """Pick ports, name the nodes, make the accounts."""
        nodes = [NodePlan(f"edge-{i + 1}", SITES[i % len(SITES)]) for i in range(node_count)]
        plan = cls(state_dir=state_dir, nodes=nodes, runtime=runtime)
        plan.ports = {name: free_port() for name in ("cloud", *SITES)}

        def account(username: str, role: str, **kw: str) -> None:
            plan.accounts[username] = Account(username, secrets.token_urlsafe(12), role, **kw)

        for service in ("registry", "scheduler", "migrator", "operator", "viewer"):
            account(service, "service")
        for site in SITES:
            account(f"bridge-{site}", "bridge")
        account("artefacts", "service")  # the artefact store, on the cloud broker
        for site in SITES:
            account(f"artefact-cache-{site}", "service")  # each site's cache, on its broker
        for node in nodes:
            account(node.node, "node", node=node.node)
        account(TENANT, "tenant", tenant=TENANT)
        return plan

    def broker_of(self, site: str) -> tuple[str, int]:
        """Host and port of a broker of the fleet."""
        return "127.0.0.1", self.ports[site]

    # -- files ------------------------------------------------------------------------------

    def mesh(self) -> dict[str, Any]:
        """The mesh description (see docs/mesh.md)."""
        users = [
            {
                "username": a.username,
                "password_hash": hash_password(a.password, iterations=1000),
                "role": a.role,
                **({"node": a.node} if a.node else {}),
                **({"tenant": a.tenant} if a.tenant else {}),
            }
            for a in self.accounts.values()
        ]
        brokers = {
            name: {
                "listeners": [{"name": "tcp", "host": "127.0.0.1", "port": port}],
                "data_dir": str(self.state_dir / "brokers" / name),
                "users": users,
                # The links form a star around the cloud (no cycle), so the cloud must relay
                # one site's messages to the other; the sites keep split horizon.
                "split_horizon": name != "cloud",
            }
            for name, port in self.ports.items()
        }
        links = [
            {
                "name": f"{site}-cloud",
                "broker": site,
                "kind": "wan",
                "local": {
                    "username": f"bridge-{site}",
                    "password": self.accounts[f"bridge-{site}"].password,
                },
                "remote": {
                    "broker": "cloud",
                    "username": f"bridge-{site}",
                    "password": self.accounts[f"bridge-{site}"].password,
                },
                "rules": link_rules(site),
                "backoff_base": 0.2,
                "backoff_cap": 5.0,
                # After a long cut a queue of more than 1,000 messages drains at 500/s at most
                # while live messages cross at once; of heartbeats and retained state only the
                # newest queued crosses (docs/mesh.md, "Draining a backlog").
                "drain": {"rate": 500.0, "backlog": 1000},
            }
            for site in SITES
        ]
        return {"brokers": brokers, "links": links}

    def agent_config(self, node: NodePlan) -> dict[str, Any]:
        """A node agent's configuration file."""
        host, port = self.broker_of(node.site)
        account = self.accounts[node.node]
        tenant = self.accounts[TENANT]
        return {
            "node_id": node.node,
            "site": node.site,
            "broker": {
                "host": host,
                "port": port,
                "username": account.username,
                "password": account.password,
            },
            "state_dir": str(self.state_dir / "agents" / node.node),
            "heartbeat_interval_s": 2.0,
            # The live view and the dashboard chart each node's usage: this fleet on one machine
            # sends usage news every 6 s at most (a fifth of this) and an idle node's heartbeat
            # every 27-30 s; a fleet on a WAN keeps the agent's 300 s (docs/agent.md).
            "heartbeat_max_interval_s": 30.0,
            "reconcile_interval_s": 3.0,
            "labels": {"site": node.site, "tier": "edge"},
            "runtimes": ["docker", "native"] if self.runtime == "docker" else ["native"],
            "docker_host_network": True,
            "extra_labels": {"fogmesh.fleet": self.fleet_id},
            "container_prefix": f"fm-{self.fleet_id}-{node.node}-",
            # What every workload gets: its site broker and the tenant's account on it.
            "workload_env": {
                "FM_BROKER_HOST": host,
                "FM_BROKER_PORT": str(port),
                "FM_USERNAME": tenant.username,
                "FM_PASSWORD": tenant.password,
                "FOGMESH_FLEET": self.fleet_id,
            },
        }

    def scheduler_config(self) -> dict[str, Any]:
        """The scheduler's configuration file."""
        host, port = self.broker_of("cloud")
        account = self.accounts["scheduler"]
        return {
            "host": host,
            "port": port,
            "client_id": "scheduler",
            "username": account.username,
            "password": account.password,
            "state_dir": str(self.state_dir / "scheduler"),
            "heartbeat_interval_s": 2.0,
        }

    def registry_spec(self, name: str, port: int, db_url: str) -> ProcessSpec:
        """Registry ``name`` on the cloud broker's ``port``, storing into ``db_url``."""
        account = self.accounts[name]
        args = ("--host", "127.0.0.1", "--port", str(port), "--client-id", name,
                "--default-interval", "2", "--missed", "3")  # fmt: skip
        # passwords (the database URL's too) in the environment, not on a command line
        env = {"FOGMESH_USERNAME": account.username, "FOGMESH_PASSWORD": account.password,
               "FOGMESH_REGISTRY_DB": db_url}  # fmt: skip
        return ProcessSpec(name, "fogmesh.registry", args, env)

    def registries(self) -> list[ProcessSpec]:
        """The registry processes: one, into SQLite in the state dir."""
        db = f"sqlite:///{self.state_dir / 'registry.db'}"
        return [self.registry_spec("registry", self.ports["cloud"], db)]

    def schedulers(self) -> list[str]:
        """The schedulers' names; each reads the file ``write_files`` keeps under its name."""
        return ["scheduler"]

    def migrator_config(self, site: str | None = None) -> dict[str, Any]:
        """The migrator's configuration file (docs/migrator.md); with ``site``, that site's own
        migrator on its broker, which moves a dead node's workloads only while the site is cut
        off ("During a partition")."""
        host, port = self.broker_of(site or "cloud")
        account = self.accounts["migrator"]
        return {
            "client_id": "migrator" if site is None else f"migrator-{site}",
            **({"site": site} if site is not None else {}),
            # Every node of this fleet reports this one machine's CPU and memory, so one node
            # hot means all are: overload shedding is off (nothing is above 100 %). Moves by
            # hand (`fogmesh migrate`), drains and lost nodes work as anywhere.
            "overload_cpu_percent": 100.0,
            "overload_memory_percent": 100.0,
            "broker": {
                "host": host,
                "port": port,
                "username": account.username,
                "password": account.password,
            },
        }

    def artefacts_config(self, site: str | None = None) -> dict[str, Any]:
        """The artefact store's configuration file (docs/artefacts.md); with ``site``, that
        site's cache on its broker, serving downloads on 127.0.0.1 at a free port."""
        name = "artefacts" if site is None else f"artefact-cache-{site}"
        host, port = self.broker_of(site or "cloud")
        account = self.accounts[name]
        config: dict[str, Any] = {
            "client_id": name,
            "data_dir": str(self.state_dir / name),
            "broker": {
                "host": host,
                "port": port,
                "username": account.username,
                "password": account.password,
            },
        }
        if site is not None:
            config |= {"site": site, "http_host": "127.0.0.1", "http_port": 0}
        return config

    def env_file(self) -> str:
        """Shell lines that point the CLI and mosquitto_pub at the fleet (and ``fogmesh fleet``
        at its state directory)."""
        op, tenant = self.accounts["operator"], self.accounts[TENANT]
        lines = {
            "FOGMESH_BROKER": f"127.0.0.1:{self.ports['cloud']}",
            "FOGMESH_HOST": "127.0.0.1",
            "FOGMESH_PORT": str(self.ports["cloud"]),
            "FOGMESH_USERNAME": op.username,
            "FOGMESH_PASSWORD": op.password,
            "FOGMESH_TENANT": TENANT,
            "FOGMESH_TENANT_USERNAME": tenant.username,
            "FOGMESH_TENANT_PASSWORD": tenant.password,
            # `fogmesh fleet kill/revive` find the running fleet's control socket by it
            "FOGMESH_FLEET_DIR": str(self.state_dir),
        }
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in lines.items())

    def write_files(self) -> dict[str, Path]:
        """Write the mesh, agent, scheduler, migrator and env files; return their paths."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)  # it holds every account's password
        paths = {
            "mesh": self.state_dir / "mesh.yaml",
            "scheduler": self.state_dir / "scheduler.yaml",
            "env": self.state_dir / "fleet.env",
        }
        write_private(paths["mesh"], yaml.safe_dump(self.mesh(), sort_keys=False))
        write_private(paths["scheduler"], yaml.safe_dump(self.scheduler_config()))
        paths["migrator"] = self.state_dir / "migrator.yaml"
        write_private(paths["migrator"], yaml.safe_dump(self.migrator_config()))
        for site in SITES:
            paths[f"migrator-{site}"] = self.state_dir / f"migrator-{site}.yaml"
            write_private(paths[f"migrator-{site}"], yaml.safe_dump(self.migrator_config(site)))
        paths["artefacts"] = self.state_dir / "artefacts.yaml"
        write_private(paths["artefacts"], yaml.safe_dump(self.artefacts_config()))
        for site in SITES:
            name = f"artefact-cache-{site}"
            paths[name] = self.state_dir / f"{name}.yaml"
            write_private(paths[name], yaml.safe_dump(self.artefacts_config(site)))
        write_private(paths["env"], self.env_file())
        for node in self.nodes:
            path = self.state_dir / f"agent-{node.node}.yaml"
            write_private(path, yaml.safe_dump(self.agent_config(node), sort_keys=False))
            paths[f"agent-{node.node}"] = path
        return paths


_BOTH_WAYS = ("events", "data", "mesh/sessions", "accounts", "tenants", "join")
"""Trees a WAN link carries both ways, whole. Of ``fm/v1/mesh`` only the sessions' claims and
hand-ons: each link writes its own status on both of its brokers itself, and no site reads
another site's links."""
_UP_ONLY = ("audit",)
"""Trees a WAN link carries up only: audit records are read by operators, in the cloud (those of
a site's own handlers, its cache and its nodes' commands, go up to them)."""
LOCAL_TREES = ("leases", "store", "devices")
"""Trees no WAN link carries, read only on the broker their writer uses: a duty's lease by its
standbys (the cloud's duties in the cloud, ``migrator-{site}`` on its site broker), the
scheduler's store by the scheduler's instances (in the cloud), a node's device readings by its
own workloads (docs/devices.md). A lease renewed every few seconds crossing every link was most
of an idle site's WAN bytes."""
_NODE_UP = tuple(c.value for c in NodeChannel if c is not NodeChannel.DESIRED)
"""A node's own channels (hello, state, heartbeat, actual, trouble): read by the cloud's
services and by its own site's migrator, never by another site, so they cross up only."""


def link_rules(site: str) -> list[dict[str, Any]]:
    """What the WAN link of ``site`` carries, each way (docs/artefacts.md, "Link rules").

    Tenants' API requests go up only: the services answering them are in the cloud, and
    bridging ``fm/v1/api/#`` down would carry every push's chunks to every site (and hold the
    cloud's intake of a push to the slowest link). Internal requests go up, and down only to
    this site's own duty (its artefact cache), which also carries that cache's replies
    (``fm/v1/ops/cache-{site}/reply/...``: what it pulls from the store crosses this link and no
    other site's). A node's own channels go up only (the cloud relays no site's nodes to
    another); its desired state and commands cross both ways (written in the cloud, or by the
    site's migrator during a cut; a node's chunk push to a peer of another site). Of the mesh
    tree only the sessions' claims and hand-ons cross (a link writes its status on both sides
    itself, and no site reads another's links). Audit records go up only; leases, the
    scheduler's store and device readings cross no link (:data:`LOCAL_TREES`); every other
    tree crosses both ways. A new tree, or a new node channel, must be placed here
    (``tests/cli/test_link_rules.py`` checks the catalogue)."""
    rules = [
        {"pattern": "fm/v1/api/#", "direction": "out", "qos": 1},
        {"pattern": "fm/v1/ops/#", "direction": "out", "qos": 1},
        {"pattern": f"fm/v1/ops/{cache_duty(site)}/#", "direction": "in", "qos": 1},  # + replies
        {"pattern": "fm/v1/reply/#", "direction": "both", "qos": 1},
    ]
    rules += [{"pattern": f"fm/v1/nodes/+/{c}", "direction": "out", "qos": 1} for c in _NODE_UP]
    rules += [
        {"pattern": f"fm/v1/nodes/+/{NodeChannel.DESIRED.value}", "direction": "both", "qos": 1},
        {"pattern": "fm/v1/nodes/+/cmd/#", "direction": "both", "qos": 1},
    ]
    rules += [{"pattern": f"fm/v1/{tree}/#", "direction": "both", "qos": 1} for tree in _BOTH_WAYS]
    rules += [{"pattern": f"fm/v1/{tree}/#", "direction": "out", "qos": 1} for tree in _UP_ONLY]
    return rules


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (a fleet's files hold passwords):
    mode 0600 from its creation on, and for a file that existed before too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
