"""node-red-contrib-fogmesh's own unit tests (``npm test``: node-red-node-test-helper, a real
Mosquitto), and the example flows' promise to hold no credentials."""

from __future__ import annotations

import subprocess

import pytest

from tests.nodered.nodered import EXAMPLES, PACKAGE, ensure_installed, load_flows

pytestmark = pytest.mark.xdist_group("nodered")  # one worker runs .ci/nodered.sh's npm ci


def test_the_package_unit_tests_pass() -> None:
    ensure_installed()
    done = subprocess.run(
        ["npm", "test"], cwd=PACKAGE, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "# fail 0" in done.stdout, done.stdout[-6000:]


def test_example_flows_hold_no_credentials() -> None:
    names = sorted(p.stem for p in EXAMPLES.glob("*.json"))
    assert names == ["alerts", "deploy-sample-app", "simulated-sensor"]
    for name in names:
        accounts = 0
        for item in load_flows(name):
            assert "credentials" not in item, (name, item["id"])
            assert not {"username", "password", "user", "pass"} & item.keys(), (name, item["id"])
            accounts += item["type"] == "fogmesh-broker"
        assert accounts == 1, name  # one account per flow, its credentials in flows_cred.json
