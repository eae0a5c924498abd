"""Fixtures of the device tests: a device root the test controls, with real device nodes."""

from __future__ import annotations

import os
import pty
import shutil
import tempfile
import tty
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from fogmesh.protocol.node import DeviceInfo, NodeFacts
from fogmesh.scheduler.placement import NodeInfo, PlacedWorkload

# The runtime fixtures (run_id, busybox, docker_rt, native_dir) are the runtime tests' own.
from tests.agent.conftest import agents, broker, probe, run_label
from tests.agent_runtime.conftest import busybox, native_dir, run_id

__all__ = [
    "agents",
    "broker",
    "busybox",
    "device_node",
    "device_root",
    "native_dir",
    "probe",
    "run_id",
    "run_label",
    "serial_sensor",
]


@pytest.fixture
def device_root() -> Iterator[Path]:
    """A device root (``dev/``, ``sys/``) every user may traverse (pytest's own tmp dirs are
    0700, which would hide the nodes from a tenant's user whatever the node's own access)."""
    root = Path(tempfile.mkdtemp(prefix="fm-devices-"))
    root.chmod(0o755)
    (root / "dev").mkdir(mode=0o755)
    (root / "dev").chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def serial_sensor(device_root: Path) -> Iterator[int]:
    """A pty pair as a serial sensor (``serial:ttyUSB0``): ``dev/ttyUSB0`` links to the slave;
    yields the master the test writes readings into."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # no echo, no line editing: the bytes written are the bytes read
    (device_root / "dev/ttyUSB0").symlink_to(os.ttyname(slave))
    try:
        yield master
    finally:
        os.close(master)
        os.close(slave)


def make_char_device(path: Path, major: int = 1, minor: int = 5, mode: int = 0o600) -> Path:
    """``mknod path c major minor`` (1:5 is /dev/zero: every read gives zero bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, mode | 0o020000, os.makedev(major, minor))
    path.chmod(mode)
    return path


def device_node(node_id: str, info: DeviceInfo, held: Sequence[PlacedWorkload] = ()) -> NodeInfo:
    """The planner's view of a node whose one device is ``info`` (by name and by path),
    running the workloads ``held``."""
    facts = NodeFacts(
        device_id=node_id,
        arch="x86_64",
        cpu_count=8,
        memory_bytes=2**34,
        disk_bytes=2**35,
        runtimes=["docker"],
        devices=[info.name, info.path],
        device_info=[info],
    )
    return NodeInfo(node_id, facts, workloads=list(held))
