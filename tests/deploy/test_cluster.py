"""deploy/compose/cluster.yaml: the cluster profile brought up on this machine, and the sample
app deployed on it (``FOGMESH_TEST_DEPLOY_CLUSTER=1``: fifteen containers are more than the CI
budget takes; test_compose.py is the short version that CI runs).

Three NATS members, two registries into the test PostgreSQL (a schema of the session's own),
two schedulers, the migrator, two site brokers linked to the cluster and an agent per site:
both nodes online in the registry, the sample app deployed by the tenant and running, both
schedulers up (one leads, the other is the standby with every app).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_compose import BUILD, COMPOSE, _run
from tests.registry.conftest import pg_session_url
from tests.support.buses import unique

__all__ = ["pg_session_url"]

DEADLINE = 180.0
pytestmark = pytest.mark.skipif(
    os.environ.get("FOGMESH_TEST_DEPLOY_CLUSTER") != "1",
    reason="the cluster profile's test is long: FOGMESH_TEST_DEPLOY_CLUSTER=1",
)


@pytest.fixture
def cluster(tmp_path: Path, pg_session_url: str) -> Iterator[dict[str, str]]:
    _run(["sh", str(BUILD)], dict(os.environ), timeout=900)
    config = tmp_path / "config"
    _run([sys.executable, str(COMPOSE / "configure.py"), str(config), "--profile", "cluster"],
         dict(os.environ))  # fmt: skip
    env = dict(os.environ, FOGMESH_CONFIG=str(config), FOGMESH_REGISTRY_DB=pg_session_url)
    compose = ["docker-compose", "-f", str(COMPOSE / "cluster.yaml"), "--env-file",
               str(config / "cluster.env"), "-p", unique("fmcluster")]  # fmt: skip
    cli = dict(os.environ, COLUMNS="200")
    for line in (config / "fleet.env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        cli[key] = value.strip("'")
    cli["FOGMESH_MANIFEST"] = str(config / "sample-app.yaml")
    try:
        _run([*compose, "up", "-d"], env)
        yield cli
    finally:
        logs = subprocess.run([*compose, "logs", "--tail", "20", "--no-color"], env=env,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        print(logs.stdout[-20000:])
        subprocess.run([*compose, "down", "-v", "--timeout", "30"], env=env,
                       capture_output=True, timeout=300, check=False)  # fmt: skip
        # workload containers an agent did not stop in time carry the fleet's label
        agent = yaml.safe_load((config / "agent-edge-1.yaml").read_text())
        label = f"label=fogmesh.fleet={agent['extra_labels']['fogmesh.fleet']}"
        left = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True,
                              text=True, timeout=60, check=False).stdout.split()  # fmt: skip
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True, timeout=120,
                           check=False)  # fmt: skip


def _cli(env: dict[str, str], *args: str, tenant: bool = False) -> str:
    env = dict(env)
    if tenant:
        env["FOGMESH_USERNAME"] = env["FOGMESH_TENANT_USERNAME"]
        env["FOGMESH_PASSWORD"] = env["FOGMESH_TENANT_PASSWORD"]
    return _run([sys.executable, "-m", "fogmesh.cli", "--timeout", "10", *args], env, timeout=60)


def _until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except AssertionError:
            pass
        time.sleep(2.0)
    pytest.fail(f"{what} within {DEADLINE:.0f} s")


@pytest.mark.timeout(1200)
def test_cluster_profile_runs_the_sample_app(cluster: dict[str, str]) -> None:
    def nodes() -> bool:
        got = {n["node"]: n["state"] for n in json.loads(_cli(cluster, "nodes", "--json"))}
        return got.get("edge-1") == "online" and got.get("edge-2") == "online"

    _until("both agents' nodes online in the registries' PostgreSQL", nodes)

    def deployed() -> bool:
        try:
            return bool(_cli(cluster, "deploy", cluster["FOGMESH_MANIFEST"], tenant=True))
        except AssertionError:  # no scheduler leads yet, or an earlier try went through
            apps = json.loads(_cli(cluster, "apps", "-o", "json", tenant=True))
            return any(a["name"] == "sensor-app" for a in apps)

    _until("the sample app deployed", deployed)

    def running() -> bool:
        out = json.loads(_cli(cluster, "workloads", "-o", "json", tenant=True))
        return len(out) == 2 and all(w["phase"] == "running" for w in out)

    _until("both workloads of the sample app running", running)
