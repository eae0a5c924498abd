"""The fleet the dashboard and CLI-output tests run against: ``fogmesh up`` itself (native
runtime, the sample app deployed), which starts the dashboard and prints its URL when the
dashboard is installed, and one headless Chromium for the package."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dashboard.browser import Page, chromium_missing
from tests.e2e.fleet import OutputReader, leftovers, read_env

BIN = Path(sys.executable).parent
"""Where this venv's console scripts are."""
OTHER_TENANT = "globex"


@dataclass
class UpFleet:
    """A running ``fogmesh up``: its dashboard's URL, its env file and tenant B's password."""

    url: str | None
    env: dict[str, str]
    other_password: str
    state: Path

    def cli(self, *args: str, tenant: bool = True) -> subprocess.CompletedProcess[str]:
        """``fogmesh`` as the fleet's tenant account (or as its operator)."""
        env = {**os.environ, **self.env, "COLUMNS": "400"}  # rich wraps no cell
        if tenant:
            env["FOGMESH_USERNAME"] = self.env["FOGMESH_TENANT_USERNAME"]
            env["FOGMESH_PASSWORD"] = self.env["FOGMESH_TENANT_PASSWORD"]
        return subprocess.run(
            [str(BIN / "fogmesh"), "--timeout", "30", *args],
            capture_output=True, text=True, timeout=120, check=False, env=env,
        )  # fmt: skip


@pytest.fixture(scope="package")
def up_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpFleet]:
    state = tmp_path_factory.mktemp("up") / "fleet"
    proc = subprocess.Popen(
        [str(BIN / "fogmesh"), "up", "--runtime", "native", "--no-live",
         "--duration", "900", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out = OutputReader(proc)
    try:
        out.wait_for("deployed sensor-app", timeout=240, proc=proc)
        out.wait_for("watch a failover", timeout=30, proc=proc)  # printed after the URL
        found = re.search(r"dashboard: (http://\S+)", out.text())
        env = read_env(state / "fleet.env")
        other = secrets.token_hex(8)
        fleet = UpFleet(found.group(1) if found else None, env, other, state)
        made = fleet.cli("tenant", "create", OTHER_TENANT, "--password", other, tenant=False)
        assert made.returncode == 0, made.stderr
        yield fleet
    finally:
        if proc.poll() is None:
            proc.send_signal(2)  # Ctrl-C: fogmesh up removes the apps and stops everything
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert leftovers(state, ["edge-1", "edge-2", "edge-3"]) == [], out.text()[-3000:]


@pytest.fixture(scope="package")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots of each view go (FOGMESH_DASHBOARD_SHOTS, else a tmp folder)."""
    chosen = os.environ.get("FOGMESH_DASHBOARD_SHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="package")
def page(up_fleet: UpFleet, shots: Path) -> Iterator[Page]:
    if reason := chromium_missing():
        pytest.skip(reason)
    assert up_fleet.url, "fogmesh up printed no dashboard URL"
    browser = Page(up_fleet.url, shots)
    try:
        yield browser
    finally:
        browser.close()
