"""``fogmesh up``'s teardown takes what its fleet started, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fogmesh.cli.fleet.teardown import remove_leftovers

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_only_the_fleets_own_processes_are_killed(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    root = tmp_path / "fleet"
    (root / "agents" / "edge-1").mkdir(parents=True)
    sibling = tmp_path / "fleet-old"  # shares the prefix, not the directory
    sibling.mkdir()
    env = dict(os.environ)
    marked = subprocess.Popen(SLEEPER, env={**env, "FOGMESH_FLEET": "f1"})
    inside = subprocess.Popen(SLEEPER, cwd=root / "agents" / "edge-1")
    other_fleet = subprocess.Popen(SLEEPER, env={**env, "FOGMESH_FLEET": "f2"})
    next_door = subprocess.Popen(SLEEPER, cwd=sibling)
    naming_it = subprocess.Popen([*SLEEPER, str(root)])  # e.g. `tail -f fleet/logs/x.log`
    started += [marked, inside, other_fleet, next_door, naming_it]

    counts = remove_leftovers("f1", root)

    assert counts["processes"] == 2
    # (teardown reaps them itself when they are its children, so only "gone" is checked)
    marked.wait(timeout=10)
    inside.wait(timeout=10)
    for survivor in (other_fleet, next_door, naming_it):
        assert survivor.poll() is None
