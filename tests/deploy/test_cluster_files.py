"""deploy/compose/configure.py ``--profile cluster`` (the files cluster.yaml reads), run as
docs/scale.md tells: the fleet is ``fogmesh up --profile cluster``'s plan, every NATS member's
configuration is one nats-server accepts with every password quoted in ``accounts.conf``
(whatever a password starts with or holds), and the replicas sit on the members the plan gives
them. Quick: no container is started (test_cluster.py brings the profile up)."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fogmesh.cli.fleet.cluster import MEMBERS, ClusterFleetPlan
from tests.deploy.test_compose import COMPOSE, _run

NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"


def _configure(out: Path) -> None:
    _run([sys.executable, str(COMPOSE / "configure.py"), str(out), "--profile", "cluster"],
         dict(os.environ))  # fmt: skip


def _nats_accepts(conf: Path) -> None:
    if not Path(NATS).exists():
        pytest.skip("nats-server is not installed")
    done = subprocess.run([NATS, "-t", "-c", conf.name], cwd=conf.parent, capture_output=True,
                          text=True, timeout=30, check=False, env={})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_configure_writes_every_file_cluster_yaml_reads(tmp_path: Path) -> None:
    _configure(tmp_path)
    lines = (COMPOSE / "cluster.yaml").read_text().splitlines()
    compose = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    named = re.findall(r"(?:/etc/fogmesh|\$\{FOGMESH_CONFIG\})/([\w./-]+)", compose)
    assert named
    for name in {*named, "cluster.env", "fleet.env", "sample-app.yaml"}:
        path = tmp_path / name
        assert path.is_file(), name
        if name.startswith("nats/member-"):
            assert path.stat().st_mode & 0o777 == 0o644  # no password in it
        else:
            assert path.stat().st_mode & 0o777 == 0o600, name  # passwords
    accounts = (tmp_path / "nats" / "accounts.conf").read_text()
    mesh = yaml.safe_load((tmp_path / "mesh.yaml").read_text())
    users = mesh["brokers"]["cloud"]["users"]
    assert accounts.count('password: "') == len(users)
    assert "$FOGMESH_NATS_PASSWORD" not in accounts  # nothing left to a member's environment
    for i in range(1, MEMBERS + 1):
        _nats_accepts(tmp_path / "nats" / f"member-{i}.conf")

    members = mesh["brokers"]["cloud"]["cluster"]["members"]
    ports = _env(tmp_path / "cluster.env")
    assert ports["FOGMESH_CLOUD_PORT"] == str(members[0]["mqtt_port"])
    registries = [_env(tmp_path / f"registry-{i}.env") for i in (1, 2)]
    assert [r["FOGMESH_CLIENT_ID"] for r in registries] == ["registry", "registry-2"]
    assert [int(r["FOGMESH_BROKER_PORT"]) for r in registries] == [
        m["mqtt_port"] for m in members[:2]
    ]  # each on a member of its own
    for i in (1, 2):
        scheduler = yaml.safe_load((tmp_path / f"scheduler-{i}.yaml").read_text())
        assert scheduler["state_dir"] == f"/var/lib/fogmesh/scheduler-{i}"
        failover = [f"127.0.0.1:{m['mqtt_port']}" for m in members[1:]]
        assert scheduler["broker"]["failover"] == failover


def test_any_password_gives_a_member_configuration_nats_accepts(tmp_path: Path) -> None:
    """The letters-first rule is gone: a password starting with a digit, or holding a space or
    quotes, is written quoted, and nats-server parses it as one string."""
    plan = ClusterFleetPlan.make(tmp_path, 2, "native")
    for name, odd in (("registry", "1e5"), ("demo", 'two "words" $and')):
        plan.accounts[name] = dataclasses.replace(plan.accounts[name], password=odd)
    plan.render_cloud(plan.mesh(), tmp_path / "nats")
    accounts = (tmp_path / "nats" / "accounts.conf").read_text()
    assert 'password: "1e5"' in accounts
    assert (tmp_path / "nats" / "accounts.conf").stat().st_mode & 0o777 == 0o600
    _nats_accepts(tmp_path / "nats" / "member-1.conf")
