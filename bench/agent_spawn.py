"""The processes ``bench/agent.py`` measures and talks to: a Mosquitto, node agents of a work
tree (their environment: the shipped unit's settings, the tree's sources, a settings file), and
what the bench reads off a running agent (its resident memory, its converged actual state)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
from _common import REPO

from fogmesh.protocol import ActualState

__all__ = [
    "UNIT",
    "free_port",
    "rss_mb",
    "settings_file",
    "spawn_agent",
    "start_mosquitto",
    "stop_agent",
    "tree_commit",
    "tree_env",
    "unit_environment",
    "wait_actual",
]

UNIT = Path("deploy/systemd/fogmesh-agent.service")
"""The unit the agent is shipped to run under (its ``Environment=`` lines are measured)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mosquitto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A Mosquitto on a free loopback port, anonymous."""
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return proc, port


async def wait_actual(
    box: list[ActualState], generation: int, count: int, timeout: float = 180.0
) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if box:
                a = box[-1]
                if (
                    a.observed_generation == generation
                    and a.state == "converged"
                    and len(a.workloads) == count
                ):
                    return
            await asyncio.sleep(0.1)


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def unit_environment(tree: str) -> dict[str, str]:
    """The ``Environment=`` settings of ``tree``'s shipped unit (:data:`UNIT`; "" for this
    checkout), as systemd reads them (space-separated assignments, quotes allowed)."""
    path = Path(tree or REPO) / UNIT
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if key == "Environment" and sep:
            for item in shlex.split(value):
                name, _, setting = item.partition("=")
                env[name] = setting
    return env


def tree_env(tree: str, start: str = "plain") -> dict[str, str]:
    """The environment that runs the agent of ``tree`` ("" for this checkout, as installed):
    with ``start == "unit"`` the unit's settings added, otherwise those settings left out."""
    unit = unit_environment(tree)
    env = {k: v for k, v in os.environ.items() if k not in unit}
    if start == "unit":
        env.update(unit)
    if tree:
        paths = [str(Path(tree) / sub) for sub in ("protocol/src", "services/node-agent/src")]
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def tree_commit(tree: str) -> str:
    done = subprocess.run(
        ["git", "-C", tree or str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def settings_file(work: Path, node: str, port: int) -> Path:
    """An ``agent.yaml`` for ``node`` as ``deploy/agent/install.sh`` writes one (JSON syntax)."""
    path = work / f"agent-{node}.yaml"
    settings = {
        "state_dir": str(work / f"state-{node}"),
        "node_id": node,
        "broker": {"host": "127.0.0.1", "port": port},
        "labels": {"fogmesh.install": "agent"},
    }
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path


def spawn_agent(
    node: str,
    port: int,
    work: Path,
    label: str,
    *,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``python -m fogmesh.agent`` for ``node`` on the broker at ``port`` (``extra``
    flags last)."""
    log = (work / f"agent-{node}.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fogmesh.agent",
            "--node-id",
            node,
            "--broker-port",
            str(port),
            "--state-dir",
            str(work / f"state-{node}"),
            "--extra-label",
            label,
            "--stop-timeout",
            "2",
            "--log-level",
            "warning",
            *(extra or []),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def stop_agent(agent: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    agent.send_signal(signal.SIGTERM)
    try:
        agent.wait(timeout=20)
    except subprocess.TimeoutExpired:
        agent.kill()
