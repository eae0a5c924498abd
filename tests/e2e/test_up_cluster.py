"""``fogmesh up --profile cluster`` as docs/scale.md tells a user to run it: a NATS cluster of
three members as the cloud broker, PostgreSQL of the fleet's own, two registries, two
schedulers, the migrator, two site brokers and their agents. Every node comes online (the CLI
lists them from the registries' PostgreSQL), the sample app's outputs reach a subscriber on the
cluster, one scheduler leads while the other holds the app as a standby, and Ctrl-C ends the
fleet with nothing left behind (processes, containers, the database's directory).

And the profile is refused with a message where it cannot run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from fogmesh.cli.fleet import cluster
from tests.e2e.fleet import FOGMESH, NODES, Outputs, fleet_cli, fogmesh_up, leftovers

UP = ["--profile", "cluster", "--runtime", "native", "--duration", "600"]


def _cluster_or_skip() -> None:
    """Skip where the profile cannot run; fail in CI, where dev.sh installs nats-server and
    PostgreSQL."""
    missing = cluster.cluster_missing()
    if missing is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the cluster profile cannot run in CI: {missing}")
    pytest.skip(f"the cluster profile cannot run here: {missing}")


def _check_plan(state: Path) -> None:
    """The mesh's cloud is the NATS cluster; the services' files point at its members."""
    mesh = yaml.safe_load((state / "mesh.yaml").read_text())
    cloud = mesh["brokers"]["cloud"]
    assert cloud["kind"] == "nats"
    assert len(cloud["cluster"]["members"]) == 3
    for i in (1, 2, 3):
        assert (state / "nats" / f"member-{i}.conf").exists()
    for name in ("scheduler", "scheduler-2"):
        sched = yaml.safe_load((state / f"{name}.yaml").read_text())
        assert sched["client_id"] == name
        assert len(sched["broker"]["failover"]) == 2
    for name in ("nats-1", "nats-2", "nats-3", "postgres", "registry", "registry-2",
                 "scheduler", "scheduler-2", "migrator"):  # fmt: skip
        assert (state / "logs" / f"{name}.log").exists(), name


def _leads(log: Path) -> bool:
    return '"scheduler leads"' in log.read_text()


@pytest.mark.xdist_group("fogmesh-up-fleets")  # nodes edge-1..3, as the other fleets'
@pytest.mark.timeout(300)
async def test_up_cluster_profile_runs_the_sample_app(tmp_path: Path) -> None:
    _cluster_or_skip()
    state = (tmp_path / "fleet").resolve()
    outputs = Outputs("e2e-cluster-subscriber")  # on the cluster's first member
    fleet_id = ""
    async with fogmesh_up(state, *UP) as fleet:
        env = await asyncio.to_thread(fleet.deployed)
        agent = yaml.safe_load((state / "agent-edge-1.yaml").read_text())
        fleet_id = agent["extra_labels"]["fogmesh.fleet"]
        _check_plan(state)

        fleet.background(outputs.follow(env))
        await outputs.more(0, "outputs on the cluster")

        listed = await asyncio.to_thread(fleet_cli, env, "--timeout", "10", "nodes", "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert {n["node"] for n in json.loads(listed.stdout)} == set(NODES), listed.stdout
        # one scheduler leads; the other took the app from the bus as the standby
        logs = state / "logs"
        assert _leads(logs / "scheduler.log") != _leads(logs / "scheduler-2.log")
        standby = "scheduler-2" if _leads(logs / "scheduler.log") else "scheduler"
        assert "app record taken from the bus" in (logs / f"{standby}.log").read_text()

        await fleet.ctrl_c()
    assert "the sample app published" in fleet.text()
    assert leftovers(state, NODES) == []
    assert not (state / "postgres").exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"fogmesh-pg-{fleet_id}-*"))


def test_up_cluster_profile_refused_without_nats_or_postgres(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster, "_nats_server", lambda: None)
    assert "nats-server is not installed" in (cluster.cluster_missing() or "")
    monkeypatch.setattr(cluster, "_nats_server", lambda: "/usr/sbin/nats-server")
    monkeypatch.setattr(cluster, "_postgres_bin", lambda: None)
    assert "PostgreSQL is not installed" in (cluster.cluster_missing() or "")


def test_up_cluster_profile_refuses_tls() -> None:
    done = subprocess.run(
        [FOGMESH, "up", "--profile", "cluster", "--tls", "--no-live", "--runtime", "native"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--tls is not available with --profile cluster" in done.stdout + done.stderr
