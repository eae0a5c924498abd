"""Helpers of the runtime plugin tests: waiting for conditions, cleaning up after a run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from fogmesh.agent.runtime import workload_key
from fogmesh.protocol.workload import WorkloadSpec

RUN_LABEL = "fogmesh.test-run"


def docker_cleanup(run_id: str) -> None:
    """Remove every container, volume and network labelled with this test run."""

    def ids(*cmd: str) -> list[str]:
        out = subprocess.run(
            ["docker", *cmd, "--filter", f"label={RUN_LABEL}={run_id}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.split()

    for container in ids("ps", "-aq"):
        subprocess.run(["docker", "rm", "-f", "-v", container], capture_output=True, check=False)
    for volume in ids("volume", "ls", "-q"):
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)
    for network in ids("network", "ls", "-q"):
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)


def key(spec: WorkloadSpec) -> str:
    """The runtime's key of ``spec``: ``{tenant}/{name}``."""
    return workload_key(spec.tenant, spec.name)


def kill_recorded(state: Path) -> None:
    """SIGKILL the process group of every instance recorded under ``state``."""
    for record in state.glob("*/*/run/instance.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.killpg(int(json.loads(record.read_text())["pid"]), signal.SIGKILL)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 60.0, what: str = "condition"
) -> None:
    """Wait until ``await check()`` is true; fail after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{what} not reached within {timeout}s")
