"""The README's first command, in a fresh clone, for a bounded time: the sample app's output
reaches a subscriber, and after shutdown no fogmesh process or container is left."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

import aiomqtt
import pytest

from tests.e2e.fleet import OutputReader, leftovers, read_env, wait_for_file
from tests.support.brokers import REPO


def _readme_first_command() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README has no bash block"
    return block.group(1).strip().splitlines()[0]


async def _count_outputs(env: dict[str, str], want: int, timeout: float) -> int:
    seen = 0
    async with aiomqtt.Client(
        "127.0.0.1",
        int(env["FOGMESH_PORT"]),
        username=env["FOGMESH_USERNAME"],
        password=env["FOGMESH_PASSWORD"],
        identifier="e2e-subscriber",
    ) as client:
        await client.subscribe("fm/v1/data/demo/sensor-app/out", qos=1)
        async with asyncio.timeout(timeout):
            async for _message in client.messages:
                seen += 1
                if seen >= want:
                    break
    return seen


# a `fogmesh up` fleet of nodes edge-1..3: `leftovers` finds Docker objects by node name, so
# the fleets run one at a time (the dashboard's fleet too)
@pytest.mark.xdist_group("fogmesh-up-fleets")
@pytest.mark.timeout(1200)  # its own waits: a venv built (900 s), outputs, the shutdown
def test_readme_up_in_a_fresh_clone(tmp_path: Path) -> None:
    command = _readme_first_command()
    assert command == "bash dev.sh up"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    state = tmp_path / "fleet"
    proc = subprocess.Popen(
        [
            *command.split(),
            "--nodes",
            "3",
            "--duration",
            "40",
            "--state-dir",
            str(state),
            "--no-live",
        ],
        cwd=clone,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
    )
    out = OutputReader(proc)
    try:
        # a fresh clone builds its own venv first: minutes, not seconds
        out.wait_for("deployed sensor-app", timeout=900, proc=proc)
        wait_for_file(state / "fleet.env", 10)
        seen = asyncio.run(_count_outputs(read_env(state / "fleet.env"), 3, timeout=60))
        assert seen >= 3
        assert proc.wait(timeout=180) == 0, out.text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "the sample app published" in out.text()
    assert leftovers(state, ["edge-1", "edge-2", "edge-3"]) == []
