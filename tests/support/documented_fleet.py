"""A fleet built the documented way, as processes: a mesh file written as docs/mesh.md shows,
``fogmesh-broker run`` or Mosquitto from exactly the files ``render-mosquitto`` writes, and the
registry, scheduler and node agents started with the commands and keys their docs give."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import psutil

from fogmesh.broker.passwords import hash_password
from tests.support.brokers import MOSQUITTO, free_port, mosquitto_etc, wait_port

__all__ = [
    "BIN",
    "DOCUMENTED_USERS",
    "Fleet",
    "cli",
    "kill_marked",
    "serving_fleet",
    "start_agent",
    "start_broker",
    "start_registry",
    "start_scheduler",
    "start_services",
    "write_private",
]

BIN = Path(sys.executable).parent
DOCUMENTED_USERS: tuple[tuple[str, str], ...] = (
    ("registry", "service"),
    ("scheduler", "service"),
    ("operator", "service"),
    ("edge-1", "node"),
    ("acme", "tenant"),
)
"""The accounts of the documented fleet (username, built-in role): one per process."""


@dataclass
class Fleet:
    """The processes of the fleet, their accounts and logs."""

    root: Path
    port: int = field(default_factory=free_port)
    kind: str = "amqtt"
    """The broker's kind (``amqtt`` or ``mosquitto``), set by :func:`start_broker`."""
    passwords: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def password(self, user: str) -> str:
        return self.passwords.setdefault(user, secrets.token_hex(12))

    def client(
        self, user: str, ident: str | None = None, *, persistent: bool = False
    ) -> aiomqtt.Client:
        """A client of the broker as ``user`` (client id ``ident``, or a fresh one of the
        user's; a persistent session with ``persistent``)."""
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=ident or f"{user}-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
            username=user,
            password=self.password(user),
            timeout=30,
        )

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> None:
        with (self.root / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                list(argv), cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env=env
            )

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.procs)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _hash(password: str, *, command: bool) -> str:
    """A ``$7$`` hash, from ``fogmesh-broker hash-password`` as the docs say, or from the same
    function in this process (each command costs a Python start-up on a busy machine)."""
    if not command:
        return hash_password(password)
    done = subprocess.run(
        [str(BIN / "fogmesh-broker"), "hash-password", "--password", password],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def _mesh(fleet: Fleet, kind: str, data_dir: Path, users: Sequence[tuple[str, str]]) -> str:
    """The mesh file of docs/mesh.md: one broker, one account per process, built-in roles."""
    lines = [
        "brokers:",
        "  cloud:",
        f"    kind: {kind}",
        "    listeners:",
        f"      - {{name: default, type: tcp, host: 127.0.0.1, port: {fleet.port}}}",
        f"    data_dir: {data_dir}",
        "    allow_anonymous: false",
        "    users:",
    ]
    for n, (user, role) in enumerate(users):
        digest = _hash(fleet.password(user), command=n == 0)  # one hash by the command
        lines.append(f'      - {{username: {user}, role: {role}, password_hash: "{digest}"}}')
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, readable by its owner only (it holds passwords)."""
    path.write_text(text)
    path.chmod(0o600)
    return path


def kill_marked(token: str) -> None:
    """Kill our own workload processes (by ``token`` in their command line), if any were left."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if token in " ".join(proc.info["cmdline"] or []):
                proc.kill()


def start_broker(
    fleet: Fleet, kind: str, etc: Path, users: Sequence[tuple[str, str]] = DOCUMENTED_USERS
) -> None:
    """The cloud broker as docs/mesh.md says: ``fogmesh-broker run``, or Mosquitto from the
    files ``render-mosquitto`` writes (run as is, as root)."""
    fleet.kind = kind
    data_dir = etc / "data" if kind == "mosquitto" else fleet.root / "broker"
    mesh = write_private(fleet.root / "mesh.yaml", _mesh(fleet, kind, data_dir, users))
    fogmesh_broker = str(BIN / "fogmesh-broker")
    if kind == "amqtt":
        fleet.start("broker", fogmesh_broker, "run", "--mesh", str(mesh), "--broker", "cloud")
        return
    render = [fogmesh_broker, "render-mosquitto", "--mesh", str(mesh), "--broker", "cloud"]
    subprocess.run([*render, "--out", str(etc)], check=True, timeout=60, capture_output=True)
    fleet.start("broker", MOSQUITTO, "-c", str(etc / "mosquitto.conf"))


@contextlib.contextmanager
def serving_fleet(
    root: Path,
    kind: str,
    token: str,
    users: Sequence[tuple[str, str]] = DOCUMENTED_USERS,
    timeout: float = 60.0,
) -> Iterator[Fleet]:
    """A :class:`Fleet` in ``root`` whose broker of ``kind`` serves (its port open; the
    embedded one has said ``ready``). On the way out every process of the fleet is stopped,
    then the workload processes marked with ``token`` or ``root`` are killed (a workload's
    shim outlives a stopped agent), then Mosquitto's files are removed."""
    fleet = Fleet(root)
    with mosquitto_etc() as etc:
        try:
            start_broker(fleet, kind, etc, users)
            wait_port(fleet.port, 60.0)
            deadline = time.monotonic() + timeout
            while kind == "amqtt" and "ready cloud" not in fleet.log("broker"):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the broker is not ready:\n{fleet.logs()}")
                time.sleep(0.05)
            yield fleet
        finally:
            fleet.stop()
            kill_marked(token)
            kill_marked(str(root))


def start_services(fleet: Fleet, node: str = "edge-1") -> None:
    """The registry, the scheduler and the agent of ``node``, each as the docs start it."""
    start_registry(fleet)
    start_scheduler(fleet)
    start_agent(fleet, node)


def start_registry(fleet: Fleet) -> None:
    """docs/registry.md: --host/--port, --username/--password, --db."""
    fleet.start(
        "registry",
        str(BIN / "fogmesh-registry"),
        *("--host", "127.0.0.1", "--port", str(fleet.port), "--username", "registry"),
        *("--password", fleet.password("registry")),
        *("--db", f"sqlite:///{fleet.root / 'registry.db'}"),
    )


def start_scheduler(fleet: Fleet) -> None:
    """docs/scheduler.md: a YAML file."""
    scheduler = write_private(
        fleet.root / "scheduler.yaml",
        f"host: 127.0.0.1\nport: {fleet.port}\nclient_id: scheduler-1\nusername: scheduler\n"
        f"password: {fleet.password('scheduler')}\n"
        f"state_dir: {fleet.root / 'scheduler'}\nheartbeat_interval_s: 1\n",
    )
    fleet.start("scheduler", str(BIN / "fogmesh-scheduler"), "--config", str(scheduler))


def start_agent(
    fleet: Fleet, node: str = "edge-1", workload_env: dict[str, str] | None = None
) -> None:
    """docs/agent.md: a YAML file with the node's own account (and ``workload_env``, what
    every workload gets, e.g. its broker and its tenant's account, as ``fogmesh up`` gives)."""
    extra = f"workload_env: {json.dumps(workload_env)}\n" if workload_env else ""
    agent = write_private(
        fleet.root / f"{node}.yaml",
        f"node_id: {node}\nsite: site-a\n"
        f"broker: {{host: 127.0.0.1, port: {fleet.port}, username: {node},"
        f" password: {fleet.password(node)}}}\n"
        f"state_dir: {fleet.root / node}\nheartbeat_interval_s: 1\n"
        # a heartbeat every second, not only on news: tests wait for heartbeats as a clock
        "heartbeat_max_interval_s: 1\n"
        "reconcile_interval_s: 1\nruntimes: [native]\nlabels: {tier: edge}\n" + extra,
    )
    name = "agent" if node == "edge-1" else f"agent-{node}"  # one process entry per node
    fleet.start(name, str(BIN / "fogmesh-agent"), "--config", str(agent))


def cli(fleet: Fleet, *args: str, tenant: str = "acme") -> subprocess.CompletedProcess[str]:
    """``fogmesh`` as ``tenant`` (its own account), as docs/registry.md and the CLI's help say."""
    env = {
        **os.environ,
        "FOGMESH_BROKER": f"127.0.0.1:{fleet.port}",
        "FOGMESH_TENANT": tenant,
        "FOGMESH_USERNAME": tenant,
        "FOGMESH_PASSWORD": fleet.password(tenant),
    }
    return subprocess.run(
        [str(BIN / "fogmesh"), "--timeout", "60", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        cwd=fleet.root,
    )
