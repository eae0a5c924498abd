"""docs/tutorial.md, run as written against a fleet started by ``fogmesh up``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.fleet import OutputReader, leftovers
from tests.support.brokers import REPO

TUTORIAL = REPO / "docs" / "tutorial.md"


def _blocks() -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", TUTORIAL.read_text(), re.S)]


# a `fogmesh up` fleet of nodes edge-1..3: `leftovers` finds Docker objects by node name, so
# the fleets run one at a time (the dashboard's fleet too)
@pytest.mark.xdist_group("fogmesh-up-fleets")
def test_tutorial_commands_run_as_written(tmp_path: Path) -> None:
    blocks = _blocks()
    assert blocks[0] == ".venv/bin/fogmesh up --state-dir ./fleet"
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    fleet = subprocess.Popen(
        ["bash", "-c", f"exec {blocks[0]} --no-live"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = OutputReader(fleet)
    try:
        out.wait_for("deployed sensor-app", timeout=180, proc=fleet)
        script = "set -euo pipefail\n" + "\n".join(blocks[1:]) + "\n"
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        reply = json.loads((tmp_path / "reply.json").read_text())
        assert reply["ok"] is True, reply
        assert reply["app"]["placements"][0]["node"]
        assert done.stdout.count("hello from edge-") >= 3, done.stdout
        deleted = json.loads((tmp_path / "deleted.json").read_text())
        assert deleted["ok"] is True, deleted
        fleet.send_signal(signal.SIGINT)  # Ctrl-C
        assert fleet.wait(timeout=120) == 0, out.text()
    finally:
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()
    assert leftovers(tmp_path / "fleet", ["edge-1", "edge-2", "edge-3"]) == []
