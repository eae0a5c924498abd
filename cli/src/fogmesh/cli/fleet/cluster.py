"""``fogmesh up --profile cluster``: the cloud tier as it runs past one machine, on this one.

The cloud broker is a NATS cluster of three members (``nats-server``, rendered from the mesh by
:func:`fogmesh.broker.nats.render_nats`, docs/cluster.md), the registry's database a PostgreSQL
server of the fleet's own (``initdb`` into a fresh directory, removed at teardown), and the
services run as replicas: two registries into that database, two schedulers (one holds the
lease, the other stands by with every app from the bus), the migrator. The sites, their
brokers, agents and the sample app are those of the default profile; the site links reach the
cluster's first member. Services fail over between members (``broker.failover``).

The two registries split the fleet themselves (``--share fleet --share-by registry``: NATS 2.9's
MQTT gateway has no shared subscriptions, docs/registry.md "Replicas").
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fogmesh.broker.config import MeshSpec
from fogmesh.broker.nats import password_env, render_nats
from fogmesh.cli.errors import CliError
from fogmesh.cli.fleet.plan import Account, FleetPlan, ProcessSpec, free_port, write_private
from fogmesh.cli.fleet.processes import ProcessSet, wait_port

__all__ = ["MEMBERS", "REPLICAS", "ClusterFleetPlan", "cluster_missing", "start_cloud_tier"]

MEMBERS = 3
"""NATS members of the cloud broker."""
REPLICAS = 2
"""Registries and schedulers."""
POSTGRES_USER = "postgres"
"""The account the server runs as when ``fogmesh up`` runs as root (PostgreSQL refuses root)."""


def _nats_server() -> str | None:
    found = shutil.which("nats-server")
    if found is None and Path("/usr/sbin/nats-server").exists():
        found = "/usr/sbin/nats-server"
    return found


def _postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's layout, or ``pg_config``)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
    bindir = Path(done.stdout.strip())
    return bindir if (bindir / "initdb").exists() else None


def cluster_missing() -> str | None:
    """Why this machine cannot run the cluster profile (None: it can)."""
    if _nats_server() is None:
        return "nats-server is not installed (Debian: apt-get install nats-server)"
    if _postgres_bin() is None:
        return "PostgreSQL is not installed (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(POSTGRES_USER)
        except KeyError:
            return f"running as root, and there is no {POSTGRES_USER} account to run PostgreSQL as"
    if importlib.util.find_spec("psycopg") is None:
        return "the registry's PostgreSQL driver is not installed (pip install psycopg[binary])"
    return None


@dataclass
class ClusterFleetPlan(FleetPlan):
    """The default plan with the cloud broker a NATS cluster and the services replicated."""

    members: list[dict[str, Any]] = field(default_factory=list)
    """Each NATS member: name, host and its MQTT, client, route and monitor ports."""
    postgres_port: int = 0
    postgres_password: str = ""

    @classmethod
    def make(cls, state_dir: Path, node_count: int, runtime: str) -> ClusterFleetPlan:
        """The default plan, plus the second replicas' accounts, the members and PostgreSQL.

        Passwords are the default plan's: render-nats writes them quoted into the members'
        ``accounts.conf`` (:meth:`render_cloud`), so any character may start one."""
        plan = super().make(state_dir, node_count, runtime)
        assert isinstance(plan, ClusterFleetPlan)
        for service in ("registry", "scheduler"):
            for name in plan.replicas(service)[1:]:
                plan.accounts[name] = Account(name, secrets.token_urlsafe(12), "service")
        plan.members = [
            {"name": f"cloud-{i}", "host": "127.0.0.1", "mqtt_port": free_port(),
             "client_port": free_port(), "route_port": free_port(), "monitor_port": free_port()}
            for i in range(1, MEMBERS + 1)
        ]  # fmt: skip
        plan.ports["cloud"] = plan.members[0]["mqtt_port"]  # links, the CLI and the live view
        plan.postgres_port = free_port()
        plan.postgres_password = secrets.token_urlsafe(12)
        return plan

    @property
    def failover(self) -> list[str]:
        """The members after the first, as a service's ``broker.failover``."""
        return [f"{m['host']}:{m['mqtt_port']}" for m in self.members[1:]]

    @property
    def database_url(self) -> str:
        """The registries' database."""
        return (
            f"postgresql://fogmesh:{self.postgres_password}@127.0.0.1:{self.postgres_port}/fogmesh"
        )

    @property
    def postgres_dir(self) -> Path:
        """Where the server's files are: a link in the state dir to a directory of its own."""
        return self.state_dir / "postgres"

    def mesh(self) -> dict[str, Any]:
        """The default mesh with the cloud broker a NATS cluster (docs/cluster.md)."""
        mesh = super().mesh()
        cloud = mesh["brokers"]["cloud"]
        first = {"name": "default", "host": "127.0.0.1", "port": self.members[0]["mqtt_port"]}
        cloud.update(
            kind="nats",
            listeners=[first],  # where the site links reach the cluster
            cluster={"name": "fogmesh-cloud", "replicas": MEMBERS, "members": self.members},
        )
        for link in mesh["links"]:
            # NATS's gateway speaks QoS 0 and 1 only, and MQTT 3.1.1
            link["rules"] = [dict(r, qos=min(int(r.get("qos", 1)), 1)) for r in link["rules"]]
        return mesh

    def _cloud_broker(self, account: str) -> dict[str, Any]:
        a = self.accounts[account]
        return {
            "host": "127.0.0.1",
            "port": self.ports["cloud"],
            "username": a.username,
            "password": a.password,
            "failover": self.failover,
        }

    def scheduler_config(self, replica: int = 1) -> dict[str, Any]:
        """Scheduler ``replica``'s configuration file (state dirs of their own: the apps are
        on the bus, docs/scheduler.md)."""
        name = "scheduler" if replica == 1 else f"scheduler-{replica}"
        return {
            "client_id": name,
            "state_dir": str(self.state_dir / name),
            "heartbeat_interval_s": 2.0,
            "broker": self._cloud_broker(name),
        }

    def migrator_config(self, site: str | None = None) -> dict[str, Any]:
        """The default migrator's file; the cloud's fails over between members."""
        config = super().migrator_config(site)
        if site is None:
            config["broker"]["failover"] = self.failover
        return config

    @staticmethod
    def replicas(service: str) -> list[str]:
        """The names (client ids, accounts) of ``service``'s replicas: ``registry``,
        ``registry-2``, ..."""
        return [service, *(f"{service}-{k}" for k in range(2, REPLICAS + 1))]

    def registry_ports(self) -> dict[str, int]:
        """Each registry and the MQTT port of the member it connects to (one of its own)."""
        return {
            name: self.members[k % len(self.members)]["mqtt_port"]
            for k, name in enumerate(self.replicas("registry"))
        }

    def registries(self) -> list[ProcessSpec]:
        """Two registries into the fleet's PostgreSQL, each on a member of its own, splitting
        the fleet between them (see the module's docs)."""
        split = {"FOGMESH_REGISTRY_SHARE": "fleet", "FOGMESH_REGISTRY_SHARE_BY": "registry"}
        return [
            replace(spec, env={**spec.env, **split})
            for spec in (
                self.registry_spec(name, port, self.database_url)
                for name, port in self.registry_ports().items()
            )
        ]

    def schedulers(self) -> list[str]:
        """The schedulers' names (their files are ``{name}.yaml``)."""
        return self.replicas("scheduler")

    def nats_env(self) -> dict[str, str]:
        """Each cloud user's password under the variable render-nats reads it from
        (docs/cluster.md)."""
        return {password_env(name): a.password for name, a in self.accounts.items()}

    def render_cloud(self, mesh: dict[str, Any], out: Path) -> None:
        """The members' configurations for ``mesh`` (this plan's, or one moved elsewhere) in
        ``out``, every password written quoted into ``accounts.conf`` (mode 0600)."""
        render_nats(MeshSpec.model_validate(mesh), "cloud", out, environ=self.nats_env())

    def write_files(self) -> dict[str, Path]:
        """The default files, the second scheduler's, and the members' configurations."""
        paths = super().write_files()
        for name in self.schedulers()[1:]:
            replica = int(name.rsplit("-", 1)[1])
            paths[name] = self.state_dir / f"{name}.yaml"
            write_private(paths[name], yaml.safe_dump(self.scheduler_config(replica)))
        self.render_cloud(self.mesh(), self.state_dir / "nats")
        for i in range(1, MEMBERS + 1):
            paths[f"nats-{i}"] = self.state_dir / "nats" / f"member-{i}.conf"
        return paths

    def remove_database(self) -> None:
        """Delete the server's directory (after the server stopped)."""
        link = self.postgres_dir
        if link.is_symlink():
            target = link.resolve()
            link.unlink()
            shutil.rmtree(target, ignore_errors=True)
        else:
            shutil.rmtree(link, ignore_errors=True)


# -- starting the cloud tier -----------------------------------------------------------------


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _as_postgres() -> list[str]:
    """The command prefix that drops root for the PostgreSQL account (nothing otherwise)."""
    if os.geteuid() != 0:
        return []
    user = POSTGRES_USER
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]


def _database_dir(plan: ClusterFleetPlan) -> Path:
    """A directory the server's account owns. As root, a fresh one under the temp dir (the
    state dir is private to root, and so may be each of its parents), linked from the state
    dir; otherwise the state dir's own ``postgres``."""
    if os.geteuid() != 0:
        plan.postgres_dir.mkdir(mode=0o700)
        return plan.postgres_dir
    home = Path(tempfile.mkdtemp(prefix=f"fogmesh-pg-{plan.fleet_id}-"))
    account = pwd.getpwnam(POSTGRES_USER)
    os.chown(home, account.pw_uid, account.pw_gid)
    plan.postgres_dir.symlink_to(home)
    return home


def _start_postgres(procs: ProcessSet, plan: ClusterFleetPlan) -> None:
    bindir = _postgres_bin()
    assert bindir is not None
    home = _database_dir(plan)
    data = home / "data"
    pwfile = home / "pwfile"
    pwfile.write_text(plan.postgres_password + "\n")
    if os.geteuid() == 0:
        account = pwd.getpwnam(POSTGRES_USER)
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    pwfile.chmod(0o600)
    init = subprocess.run(
        [*_as_postgres(), str(bindir / "initdb"), "-D", str(data), "-U", "fogmesh",
         f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
        capture_output=True, text=True, timeout=120, check=False, cwd=home,
    )  # fmt: skip
    pwfile.unlink()
    if init.returncode != 0:
        raise CliError(f"initdb failed:\n{(init.stdout + init.stderr)[-2000:]}")
    child = procs.run(
        "postgres",
        [*_as_postgres(), str(bindir / "postgres"), "-D", str(data),
         "-p", str(plan.postgres_port), "-c", "listen_addresses=127.0.0.1",
         "-c", "unix_socket_directories=", "-c", "max_connections=40"],
    )  # fmt: skip
    if not wait_port(plan.postgres_port, timeout=60, proc=child.proc):
        raise CliError(f"PostgreSQL did not start:\n{child.log.read_text()[-2000:]}")
    env = {**os.environ, "PGPASSWORD": plan.postgres_password}
    deadline = time.monotonic() + 60
    while True:  # the port opens before the server takes connections
        made = subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(plan.postgres_port),
             "-U", "fogmesh", "fogmesh"],
            capture_output=True, text=True, timeout=30, check=False, env=env,
        )  # fmt: skip
        if made.returncode == 0:
            return
        if time.monotonic() > deadline or not child.alive:
            raise CliError(f"could not create the registry's database: {made.stderr.strip()}")
        time.sleep(0.5)


def _start_nats(procs: ProcessSet, plan: ClusterFleetPlan, paths: dict[str, Path]) -> None:
    exe = _nats_server()
    assert exe is not None
    children = [
        procs.run(f"nats-{i}", [exe, "-c", str(paths[f"nats-{i}"])])  # passwords: accounts.conf
        for i in range(1, MEMBERS + 1)
    ]
    deadline = time.monotonic() + 60
    for child, member in zip(children, plan.members, strict=True):
        while not _healthy(member["monitor_port"]):
            if not child.alive or time.monotonic() > deadline:
                raise CliError(f"NATS member {member['name']} did not start:\n"
                               f"{child.log.read_text()[-2000:]}")  # fmt: skip
            time.sleep(0.2)
        if not wait_port(member["mqtt_port"], timeout=30, proc=child.proc):
            raise CliError(f"NATS member {member['name']} opened no MQTT listener")


def start_cloud_tier(procs: ProcessSet, plan: ClusterFleetPlan, paths: dict[str, Path]) -> None:
    """Start the NATS members and PostgreSQL, each ready when this returns (blocking)."""
    _start_nats(procs, plan, paths)
    _start_postgres(procs, plan)
