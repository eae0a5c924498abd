"""``fogmesh up``'s teardown with the Docker runtime leaves no container of its fleet, even
when a node was revived at the last moment: the user kills the convolver's node, revives it
and presses Ctrl-C at once, while the revived agent is starting its workloads again from its
own state directory. Its containers are found by the fleet's label, so a container of another
fleet (or test) on the same engine with the same node names is neither taken nor counted."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.fleet import NODES, UpFleet, fleet_id, fleet_ok, leftovers, read_env, wait_for_file

BUILD_SH = Path(__file__).parents[2] / "deploy" / "images" / "sample-app" / "build.sh"


def _docker(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def sample_image() -> str:
    """fogmesh/sample-app:latest, built (or reused) by deploy/images/sample-app/build.sh."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("dockerd does not answer; run .ci/docker.sh")
    done = subprocess.run([str(BUILD_SH)], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"build.sh failed:\n{done.stderr[-4000:]}"
    return done.stdout.strip().splitlines()[-1]


# a `fogmesh up` fleet of nodes edge-1..3, run one at a time with the others (CPU, and the
# fleets' tests count their leftovers by node name within their fleet)
@pytest.mark.xdist_group("fogmesh-up-fleets")
@pytest.mark.timeout(420)
@pytest.mark.parametrize("pause", [0.0, 2.0], ids=["at-once", "agent-booting"])
def test_a_node_revived_at_the_last_moment_leaves_no_container(
    sample_image: str, tmp_path: Path, pause: float
) -> None:
    state = tmp_path / "fleet"
    # another fleet's container of a node named edge-1, as a concurrent test makes them
    stranger = f"fm-stranger-{uuid.uuid4().hex[:8]}"
    _docker("create", "--name", stranger, "--label", "fogmesh.node=edge-1",
            "--label", "fogmesh.fleet=stranger", sample_image)  # fmt: skip
    fleet = UpFleet(state, "--nodes", "3", "--runtime", "docker")
    try:
        placed = fleet.wait_match(r"sensor-app-convolve-0 on (edge-\d+)")
        victim = placed.group(1)
        wait_for_file(state / "fleet.env", 10)
        env = read_env(state / "fleet.env")
        assert "killed " + victim in fleet_ok(env, "fleet", "kill", victim)
        fleet.wait_match(rf"event: workload-replaced sensor-app-convolve-0: {victim} -> edge-\d+")
        said = fleet_ok(env, "fleet", "revive", victim)
        assert f"started the agent of {victim} again" in said, said
        time.sleep(pause)
        fleet.proc.send_signal(signal.SIGINT)  # Ctrl-C while the revived agent starts up
        assert fleet.proc.wait(timeout=180) == 0, fleet.text()
        said_at_end = fleet.text()
        assert "teardown left these behind" not in said_at_end, said_at_end
        assert re.search(r"removed \d+ containers", said_at_end), said_at_end
        fleet_marks = fleet_id(state)
        assert fleet_marks is not None
        left = _docker("ps", "-aq", "--filter", f"label=fogmesh.fleet={fleet_marks}")
        assert left == "", f"containers of the fleet left: {left}\n{said_at_end}"
        assert leftovers(state, NODES) == [], said_at_end
        # the stranger is untouched
        assert _docker("ps", "-aq", "--filter", f"name={stranger}") != ""
    finally:
        fleet.end()
        mine = fleet_id(state)
        if mine is not None:  # a failed run's own containers, never another fleet's
            ids = _docker("ps", "-aq", "--filter", f"label=fogmesh.fleet={mine}").split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
        subprocess.run(["docker", "rm", "-f", stranger], capture_output=True, check=False)
