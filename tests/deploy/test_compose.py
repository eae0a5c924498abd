"""deploy/compose: the cloud and a site brought up with docker-compose from the images that
deploy/images/fogmesh/build.sh makes here (no registry pull), configured by configure.py.

CI: the cloud (broker, registry, scheduler, migrator) and site-a (broker linked to the cloud,
one agent); the agent's node is online in the registry and the scheduler answers, asked with
the ``fogmesh`` CLI over the cloud's published port. ``FOGMESH_TEST_DEPLOY_FULL=1`` adds site-b
with a second agent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.brokers import REPO, free_port
from tests.support.buses import unique

COMPOSE = REPO / "deploy" / "compose"
BUILD = REPO / "deploy" / "images" / "fogmesh" / "build.sh"
FULL = os.environ.get("FOGMESH_TEST_DEPLOY_FULL") == "1"
DEADLINE = 120.0


def _run(argv: list[str], env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
    )
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


class Deployment:
    """The configuration directory and the compose projects brought up from it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "config"
        self.name = unique("fmdeploy")
        self.ports = {"cloud": free_port(), "site-a": free_port(), "site-b": free_port()}
        self.projects: list[tuple[str, dict[str, str]]] = []
        _run(
            [sys.executable, str(COMPOSE / "configure.py"), str(self.config),
             "--cloud-port", str(self.ports["cloud"]), "--site-port", str(self.ports["site-a"])],
            dict(os.environ),
        )  # fmt: skip
        self.cli_env = dict(os.environ, COLUMNS="200")
        for line in (self.config / "fleet.env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            self.cli_env[key] = value.strip("'")

    def up(self, kind: str, **env: str) -> None:
        """``docker-compose up -d`` of cloud.yaml or site.yaml as project ``{name}-{what}``."""
        full = dict(os.environ, FOGMESH_CONFIG=str(self.config), **env)
        project = f"{self.name}-{env.get('FOGMESH_SITE', kind)}"
        self.projects.append((f"{kind}:{project}", full))
        _run(["docker-compose", "-f", str(COMPOSE / f"{kind}.yaml"), "-p", project, "up", "-d"],
             full)  # fmt: skip

    def logs(self) -> str:
        """Every project's last log lines."""
        out = []
        for spec, env in self.projects:
            kind, _, project = spec.partition(":")
            done = subprocess.run(
                ["docker-compose", "-f", str(COMPOSE / f"{kind}.yaml"), "-p", project, "logs",
                 "--tail", "30", "--no-color"],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            out.append(done.stdout[-4000:])
        return "\n".join(out)

    def down(self) -> None:
        """``docker-compose down -v`` of every project, sites first."""
        for spec, env in reversed(self.projects):
            kind, _, project = spec.partition(":")
            subprocess.run(
                ["docker-compose", "-f", str(COMPOSE / f"{kind}.yaml"), "-p", project, "down",
                 "-v", "--timeout", "5"],
                env=env, capture_output=True, timeout=120, check=False,
            )  # fmt: skip

    def fogmesh(self, *args: str, tenant: bool = False) -> str:
        """The CLI against the cloud's published port, as the operator (or the tenant)."""
        env = dict(self.cli_env)
        if tenant:
            env["FOGMESH_USERNAME"] = env["FOGMESH_TENANT_USERNAME"]
            env["FOGMESH_PASSWORD"] = env["FOGMESH_TENANT_PASSWORD"]
        argv = [sys.executable, "-m", "fogmesh.cli", "--timeout", "10", *args]
        return _run(argv, env, timeout=60)

    def poll(self, cond: str, check: Callable[[], bool]) -> None:
        """Call ``check`` until it returns true; fail with ``cond`` and the logs."""
        deadline = time.monotonic() + DEADLINE
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except AssertionError as exc:  # the CLI could not reach the fleet yet
                last = exc
            time.sleep(1.0)
        pytest.fail(f"{cond} within {DEADLINE:.0f} s ({last})\n{self.logs()}")


@pytest.fixture(scope="module")
def images() -> None:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is missing; .ci/compose.sh installs it")
    started = time.monotonic()
    _run(["sh", str(BUILD)], dict(os.environ), timeout=900)
    print(f"images ready in {time.monotonic() - started:.1f}s")


@pytest.fixture
def deployment(images: None, tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path)
    try:
        yield dep
    finally:
        dep.down()


def _nodes(dep: Deployment) -> dict[str, str]:
    return {n["node"]: n["state"] for n in json.loads(dep.fogmesh("nodes", "--json"))}


@pytest.mark.timeout(900)
def test_cloud_and_a_site_come_up_from_the_compose_files(deployment: Deployment) -> None:
    dep = deployment
    dep.up("cloud", FOGMESH_CLOUD_PORT=str(dep.ports["cloud"]))
    site_a = {"FOGMESH_SITE": "site-a", "FOGMESH_NODE": "edge-1",
              "FOGMESH_SITE_PORT": str(dep.ports["site-a"])}  # fmt: skip
    dep.up("site", **site_a)
    sites = ["edge-1"]
    if FULL:
        dep.up("site", FOGMESH_SITE="site-b", FOGMESH_NODE="edge-2",
               FOGMESH_SITE_PORT=str(dep.ports["site-b"]))  # fmt: skip
        sites.append("edge-2")
    # the agent's hello and heartbeats cross the site's link into the cloud's registry
    dep.poll(
        "every agent's node online in the registry",
        lambda: all(_nodes(dep).get(n) == "online" for n in sites),
    )
    # the scheduler leads and answers the tenant's apps API
    dep.poll(
        "the scheduler answering",
        lambda: json.loads(dep.fogmesh("apps", "-o", "json", tenant=True)) == [],
    )
