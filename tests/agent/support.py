"""Helpers for the agent tests: the agent as a child process, docker CLI calls, a bus probe."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from fogmesh.agent.runtime.native import NativeRuntime
from fogmesh.bus import Bus, MessageContext
from fogmesh.protocol import topics
from tests.support.brokers import REPO, BrokerProcess
from tests.support.processes import kill, terminate

__all__ = [
    "AgentNode",
    "AgentProc",
    "Probe",
    "docker",
    "docker_json",
    "inspect",
    "mosquitto_pub",
    "remove_native",
    "running_containers",
    "wait_for",
]

M = TypeVar("M", bound=BaseModel)


def docker(*args: str, check: bool = True) -> str:
    """Run ``docker args...``, return stdout."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=120
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def docker_json(*args: str) -> Any:
    """``docker args...`` whose output is JSON."""
    return json.loads(docker(*args))


def inspect(container: str) -> Any:
    """``docker inspect`` of one container."""
    return docker_json("inspect", container)[0]


def running_containers(label: str) -> dict[str, str]:
    """Name -> id of the running containers carrying ``label`` (``k=v``)."""
    out = docker("ps", "--no-trunc", "--filter", f"label={label}", "--format", "{{.Names}} {{.ID}}")
    return dict(line.split() for line in out.splitlines() if line.strip())


def mosquitto_pub(broker: BrokerProcess, topic: str, payload: str, *, retain: bool = True) -> None:
    """Publish with the real ``mosquitto_pub`` (QoS 1)."""
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-t", topic]
    if retain:
        args.append("-r")
    subprocess.run([*args, "-m", payload], check=True, timeout=30)


async def wait_for(predicate: Callable[[], bool], timeout: float = 40.0, what: str = "") -> None:
    """Poll ``predicate`` (which may block briefly, e.g. call docker) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(predicate):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.2)


@dataclass
class AgentProc:
    """``python -m fogmesh.agent`` as a child process."""

    node: str
    broker_port: int
    state_dir: Path
    run_label: str
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self) -> AgentProc:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir.parent / f"agent-{self.node}.log"
        log = self.log_path.open("ab")
        cmd = [
            sys.executable,
            "-m",
            "fogmesh.agent",
            "--node-id",
            self.node,
            "--broker-port",
            str(self.broker_port),
            "--state-dir",
            str(self.state_dir),
            "--heartbeat",
            "1",
            "--reconcile-interval",
            "1",
            "--stop-timeout",
            "1",
            "--retry-base",
            "0.2",
            "--extra-label",
            self.run_label,
            "--log-level",
            "debug",
            *self.extra,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}
        )
        log.close()
        return self

    def stop(self) -> None:
        """SIGTERM, wait (the agent says offline and leaves its workloads running)."""
        terminate(self.proc, 20)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the agent dies without a word."""
        kill(self.proc)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""


async def remove_native(agents: Iterable[AgentProc]) -> None:
    """Remove the native workloads the (stopped or killed) ``agents`` left running."""
    for agent in agents:
        native = NativeRuntime(agent.state_dir / "native", agent.node)
        try:
            for inst in await native.list_instances():
                await native.remove(inst.name)
        finally:
            await native.close()


class Probe:
    """Collects the messages of some topics on a test bus."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.messages: dict[str, list[Any]] = {}

    def watch(self, topic: str, model: type[M]) -> list[M]:
        box: list[M] = self.messages.setdefault(topic, [])

        async def handler(message: M, ctx: MessageContext) -> None:
            box.append(message)

        self.bus.subscribe(topic, model, handler)
        return box


@dataclass
class AgentNode:
    """One node of a test: its agents on the test's broker (killed after it, their workloads
    removed), its channels, its running containers (by the test's run label)."""

    node: str
    broker: BrokerProcess
    probe: Probe
    state_dir: Path
    run_label: str
    agents: list[AgentProc]

    def start(self, *extra: str) -> AgentProc:
        """An agent of the node (``extra``: more command-line options)."""
        agent = AgentProc(self.node, self.broker.port, self.state_dir, self.run_label, list(extra))
        self.agents.append(agent.start())
        return agent

    def watch(self, channel: str, model: type[M]) -> list[M]:
        """Every message the node publishes on ``channel`` (``hello``, ``actual``...)."""
        return self.probe.watch(topics.node(self.node, channel), model)

    def set_desired(self, doc: str) -> None:
        """Publish the node's desired state (retained, with ``mosquitto_pub``)."""
        mosquitto_pub(self.broker, topics.node(self.node, "desired"), doc)

    def containers(self) -> dict[str, str]:
        """Name -> id of the running containers of the test."""
        return running_containers(self.run_label)
