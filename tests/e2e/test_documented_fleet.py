"""A small fleet built from the documentation alone, without ``fogmesh up``'s code.

A mesh file written as docs/mesh.md shows (accounts hashed with ``fogmesh-broker
hash-password``, the built-in roles), ``fogmesh-broker run``, the registry, the scheduler and one
node agent started with the commands and configuration keys their docs give, each as its own
process with its own account. A tenant deploys an app with the ``fogmesh`` CLI; the events of
every role (the scheduler's app events, the agent's workload-state events, the registry's
node-joined) must reach the tenant's subscriber (its own events only) and an operator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiomqtt
import psutil
import pytest

from fogmesh.broker.passwords import hash_password
from tests.broker.conftest import collect, wait_for
from tests.support.brokers import free_port, wait_port

BIN = Path(sys.executable).parent
TOKEN = secrets.token_hex(6)  # marks this test's workload processes, to clean up only those
MANIFEST = f"""\
name: hello
components:
  - name: greeter
    runtime: native
    executable: /bin/sh
    command: ["-c", "sleep 600; : {TOKEN}"]
    requests: {{cpu: 50m, memory: 16Mi}}
"""


@dataclass
class Fleet:
    """The processes of the fleet, their accounts and logs."""

    root: Path
    port: int = field(default_factory=free_port)
    passwords: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def password(self, user: str) -> str:
        return self.passwords.setdefault(user, secrets.token_hex(12))

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


def _mesh(fleet: Fleet, kind: str, data_dir: Path) -> str:
    """The mesh file of docs/mesh.md: one broker, one account per process, built-in roles."""
    users = [
        ("registry", "service"),
        ("scheduler", "service"),
        ("operator", "service"),
        ("edge-1", "node"),
        ("acme", "tenant"),
    ]
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
    for user, role in users:
        digest = _hash(fleet.password(user), command=user == "edge-1")
        lines.append(f'      - {{username: {user}, role: {role}, password_hash: "{digest}"}}')
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _kill_workloads() -> None:
    """Our own workload processes (by the token in their command line), if any were left."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if TOKEN in " ".join(proc.info["cmdline"] or []):
                proc.kill()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    made = Fleet(tmp_path)
    try:
        yield made
    finally:
        made.stop()
        _kill_workloads()


def _cli(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    """``fogmesh`` as the tenant acme, as docs/registry.md and the CLI's help say."""
    env = {
        **os.environ,
        "FOGMESH_BROKER": f"127.0.0.1:{fleet.port}",
        "FOGMESH_TENANT": "acme",
        "FOGMESH_USERNAME": "acme",
        "FOGMESH_PASSWORD": fleet.password("acme"),
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


def _kinds(messages: list[aiomqtt.Message]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for msg in messages:
        with contextlib.suppress(ValueError, TypeError):
            event = json.loads(bytes(msg.payload))
            found.setdefault(str(event.get("kind")), []).append(event)
    return found


def _start_broker(fleet: Fleet, kind: str, etc: Path) -> None:
    """The cloud broker as docs/mesh.md says: ``fogmesh-broker run``, or Mosquitto from the
    files ``render-mosquitto`` writes (run as is, as root)."""
    data_dir = etc / "data" if kind == "mosquitto" else fleet.root / "broker"
    mesh = _write(fleet.root / "mesh.yaml", _mesh(fleet, kind, data_dir))
    fogmesh_broker = str(BIN / "fogmesh-broker")
    if kind == "amqtt":
        fleet.start("broker", fogmesh_broker, "run", "--mesh", str(mesh), "--broker", "cloud")
        return
    render = [fogmesh_broker, "render-mosquitto", "--mesh", str(mesh), "--broker", "cloud"]
    subprocess.run([*render, "--out", str(etc)], check=True, timeout=60, capture_output=True)
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    fleet.start("broker", exe, "-c", str(etc / "mosquitto.conf"))


@pytest.fixture
def etc() -> Iterator[Path]:
    """Where Mosquitto's files go: a directory its own user can reach (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="fm-fleet-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("kind", ["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
async def test_a_fleet_from_the_docs_alone(etc: Path, fleet: Fleet, kind: str) -> None:
    _start_broker(fleet, kind, etc)
    await asyncio.to_thread(wait_port, fleet.port, 60.0)
    if kind == "amqtt":
        await wait_for(lambda: "ready cloud" in fleet.log("broker"), what="the broker")

    at_tenant: list[aiomqtt.Message] = []
    at_operator: list[aiomqtt.Message] = []
    tenant = aiomqtt.Client(
        "127.0.0.1",
        fleet.port,
        identifier="acme-watch",
        username="acme",
        password=fleet.password("acme"),
        timeout=30,
    )
    operator = aiomqtt.Client(
        "127.0.0.1",
        fleet.port,
        identifier="operator-watch",
        username="operator",
        password=fleet.password("operator"),
        timeout=30,
    )
    async with tenant, operator:
        await tenant.subscribe("fm/v1/events/tenants/acme/#", qos=1)
        await tenant.subscribe("fm/v1/events/fleet/#", qos=1)  # refused: not the tenant's
        await operator.subscribe("fm/v1/events/#", qos=1)
        tasks = [
            asyncio.create_task(collect(tenant, at_tenant)),
            asyncio.create_task(collect(operator, at_operator)),
        ]
        host, port = "127.0.0.1", str(fleet.port)
        # docs/registry.md: --host/--port, --username/--password, --db
        fleet.start(
            "registry",
            str(BIN / "fogmesh-registry"),
            *("--host", host, "--port", port, "--username", "registry"),
            *("--password", fleet.password("registry")),
            *("--db", f"sqlite:///{fleet.root / 'registry.db'}"),
        )
        # docs/scheduler.md: a YAML file
        scheduler = _write(
            fleet.root / "scheduler.yaml",
            f"host: {host}\nport: {port}\nclient_id: scheduler-1\nusername: scheduler\n"
            f"password: {fleet.password('scheduler')}\n"
            f"state_dir: {fleet.root / 'scheduler'}\nheartbeat_interval_s: 1\n",
        )
        fleet.start("scheduler", str(BIN / "fogmesh-scheduler"), "--config", str(scheduler))
        # docs/agent.md: a YAML file with the node's own account
        agent = _write(
            fleet.root / "agent.yaml",
            f"node_id: edge-1\nsite: site-a\n"
            f"broker: {{host: {host}, port: {port}, username: edge-1,"
            f" password: {fleet.password('edge-1')}}}\n"
            f"state_dir: {fleet.root / 'agent'}\nheartbeat_interval_s: 1\n"
            "reconcile_interval_s: 1\nruntimes: [native]\nlabels: {tier: edge}\n",
        )
        fleet.start("agent", str(BIN / "fogmesh-agent"), "--config", str(agent))

        def seen(sink: list[aiomqtt.Message], kind: str) -> bool:
            return kind in _kinds(sink)

        try:
            await wait_for(lambda: seen(at_operator, "node-joined"), 120, "node-joined")
            app = _write(fleet.root / "hello.yaml", MANIFEST)
            # the scheduler may not have the node's hello yet: a refused deploy changes nothing
            for _ in range(30):
                done = await asyncio.to_thread(_cli, fleet, "deploy", str(app))
                if done.returncode == 0 or "unschedulable" not in done.stderr:
                    break
                await asyncio.sleep(1)
            assert done.returncode == 0, done.stdout + done.stderr
            for who, sink in (("tenant", at_tenant), ("operator", at_operator)):
                for event in ("app-deployed", "workload-state"):
                    await wait_for(partial(seen, sink, event), 120, f"{event} at the {who}")
            done = await asyncio.to_thread(_cli, fleet, "delete", "hello")
            assert done.returncode == 0, done.stdout + done.stderr
            await wait_for(
                lambda: any(
                    e.get("data", {}).get("to") == "removed"
                    for e in _kinds(at_tenant).get("workload-state", [])
                ),
                120,
                "the workload removed",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{fleet.logs()}") from None
        finally:
            for t in tasks:
                t.cancel()
    tenant_kinds, operator_kinds = _kinds(at_tenant), _kinds(at_operator)
    # every role's events reach the operator; the tenant gets its own only
    assert {"node-joined", "app-deployed", "workload-state"} <= operator_kinds.keys()
    assert {"app-deployed", "workload-state"} <= tenant_kinds.keys()
    assert "node-joined" not in tenant_kinds
    assert all(e.get("source", "").startswith("edge-1") for e in tenant_kinds["workload-state"])
    assert all(m.topic.value.startswith("fm/v1/events/tenants/acme/") for m in at_tenant)
