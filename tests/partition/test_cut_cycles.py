"""Repeated cut / heal cycles: what the cloud writes during a cut reaches the site's agents
after each heal, and the cloud's record is what the agents run.

The fleet of ``test_unreachable`` (heartbeat 2 s, K = 3: the liveness timeout is 6 s; the link's
keepalive of 5 s makes the cloud see the cut after 7.5 s) plus site-a's own migrator in site
mode. An app of ten replicas runs spread over the two site nodes. Ten cycles, cuts of about 3 s
(shorter than the liveness timeout) and 10 s (longer) in turn: each cut begins, the app is
scaled down by one replica (a desired state the scheduler writes during the cut: a cut-off node
takes no new workload, but it can be told to stop one), the cut heals; then within
``REACH_S`` the agent has stopped the removed replica and the processes running are exactly
the placements the scheduler records. About two minutes (66 s of them cut).

Skipped without root or ``ip netns``, except with ``CI=true``, where it fails instead.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fogmesh.cli.fleet.plan import TENANT
from tests.partition.cut_fleet import APP, SITE_NODES, CutFleet, site_migrator
from tests.partition.workloads import marked, sleeper
from tests.support.brokers import REPO
from tests.support.buses import eventually
from tests.support.netns import NsPair

pytestmark = pytest.mark.netns

CYCLES = 10
SHORT_S, LONG_S = 3.0, 10.0
REACH_S = 20.0
"""How long after a heal the desired state written during the cut may take to be acted on
(a few seconds when the machine is quiet; generous for a loaded one)."""


def manifest(token: str) -> dict[str, Any]:
    """``CYCLES`` replicas of ``w``; ``token`` marks their processes."""
    return {
        "name": APP,
        "tenant": TENANT,
        "components": [
            {
                "name": "w",
                "runtime": "native",
                "executable": sys.executable,
                "command": sleeper(token),
                "requests": {"cpu": "50m", "memory": "32Mi"},
                "replicas": CYCLES,
            }
        ],
    }


class Prober:
    """One ``tests.partition.probe serve`` in the cloud's namespace, asked line by line."""

    def __init__(self, fleet: CutFleet) -> None:
        operator = fleet.plan.accounts["operator"]
        argv = [sys.executable, "-m", "tests.partition.probe", "serve"]
        argv += ["--port", str(fleet.plan.ports["cloud"]), "--user", operator.username]
        argv += ["--tenant", TENANT, "--app", APP]
        self.proc = subprocess.Popen(
            fleet.pair.exec(fleet.pair.cloud, *argv),
            cwd=REPO,
            env={**os.environ, "PROBE_PASSWORD": operator.password},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, line: str, timeout: float = 60.0) -> dict[str, Any]:
        """The answer to one command (``{"error": ...}`` when there is none in time)."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                break
            answer = self.proc.stdout.readline()
            if not answer:
                return {"error": "the probe ended"}
            if answer.startswith("{"):  # the rest is the bus's log lines
                result: dict[str, Any] = json.loads(answer)
                return result
        raise AssertionError(f"the probe did not answer {line!r} in {timeout:g}s")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def running(token: str) -> dict[str, str]:
    """What the agents run: workload name -> node (from the processes' own environment)."""
    return {w.name: w.node for w in marked(token)}


@pytest.mark.timeout(600)
async def test_after_every_heal_the_cut_s_desired_state_is_run(
    tmp_path: Path, pair: NsPair
) -> None:
    fleet = CutFleet(tmp_path / "fleet", pair)
    token = f"fm-cycles-{secrets.token_hex(4)}"
    records: dict[str, Any] = {}

    prober: Prober | None = None

    def look() -> dict[str, Any]:
        assert prober is not None
        return prober.ask("look")

    def agree(replicas: int) -> bool:
        seen = look()
        placed = {w: n for w, n in seen.get("placements", {}).items() if n is not None}
        records.update(seen=seen, running=running(token))
        return len(placed) == replicas and records["running"] == placed

    def scale(replicas: int) -> None:
        assert prober is not None
        done = prober.ask(f"scale w {replicas}")
        assert "error" not in done, f"{done}\n{fleet.logs()}"

    async def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            await eventually(predicate, timeout, what)
        except TimeoutError:
            pytest.fail(f"{what} (not within {timeout:g}s): {records}\n{fleet.logs()}")

    try:
        fleet.start_all()
        site_migrator(fleet)
        prober = Prober(fleet)
        await wait(
            lambda: all(look().get("nodes", {}).get(n) == "online" for n in SITE_NODES),
            120, "both site nodes online",
        )  # fmt: skip
        deployed = fleet.deploy(manifest(token))
        assert "error" not in deployed, f"{deployed}\n{fleet.logs()}"
        await wait(lambda: agree(CYCLES), 120, "every replica running")
        assert len(set(records["running"].values())) == 2, records  # both nodes run some
        print("deployed and running", flush=True)
        figures = []
        for cycle in range(CYCLES):
            cut_s = LONG_S if cycle % 2 else SHORT_S
            pair.cut()
            cut_at = time.monotonic()
            left = CYCLES - cycle - 1
            scale(left)  # written while the site is cut off
            await asyncio.sleep(max(0.0, cut_at + cut_s - time.monotonic()))
            pair.heal()
            healed_at = time.monotonic()
            cut = healed_at - cut_at
            await wait(functools.partial(agree, left), REACH_S, f"cycle {cycle} (cut {cut:.1f}s)")
            figures.append((round(cut, 1), round(time.monotonic() - healed_at, 1)))
            print(f"cycle {cycle}: cut {cut:.1f}s, agreed {figures[-1][1]}s after the heal",
                  flush=True)  # fmt: skip
        print("cut s, heal to agreed s:", figures)
    finally:
        if prober is not None:
            prober.close()
        fleet.stop()
