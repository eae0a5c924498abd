"""What the node is (facts, for hello) and how busy it is (usage, for the heartbeat).

The default node id is the paper's device id, hostname and MAC address joined (``-`` instead
of ``/``, which cannot appear in a topic level): ``{hostname}-{mac}`` with the MAC of the first
non-loopback interface, lower case, colons removed.

Memory, CPU time and link addresses are read from ``/proc`` and ``/sys``
(:mod:`fogmesh.agent.procfs`, the figures psutil gives, without loading psutil).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import uuid
from pathlib import Path

from fogmesh.agent import procfs
from fogmesh.agent.config import AgentConfig
from fogmesh.agent.devices import DeviceCatalog
from fogmesh.protocol import NodeFacts, Usage, check_id

__all__ = [
    "AGENT_VERSION",
    "default_node_id",
    "detect_devices",
    "device_catalog",
    "gather_facts",
    "mac_address",
    "sample_usage",
]

AGENT_VERSION = "0.1.0"
_CPU = procfs.CpuMeter()
"""The node's CPU meter: each usage sample is the CPU use since the one before (the first:
since the agent loaded this module)."""


def mac_address() -> str:
    """The MAC of the first non-loopback interface with one (sorted by name), colons removed;
    falls back to :func:`uuid.getnode`."""
    for name, address in sorted(procfs.link_addresses().items()):
        if name != "lo" and address != "00:00:00:00:00:00":
            return address.replace(":", "").replace("-", "").lower()
    return f"{uuid.getnode():012x}"


def default_node_id() -> str:
    """``{hostname}-{mac}``, as the paper's device id (hostname + MAC)."""
    host = socket.gethostname().split(".")[0] or "node"
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in host)
    return check_id(f"{host}-{mac_address()}", what="node id")


def _cpu_model() -> str:
    try:
        with Path("/proc/cpuinfo").open() as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in {"model name", "Hardware", "Model"}:
                    return value.strip()[:256]
    except OSError:
        pass
    return platform.processor()[:256]


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())[:128]
    except OSError:
        return platform.system()[:128]


def device_catalog(config: AgentConfig) -> DeviceCatalog:
    """The node's device catalog as its config describes it (docs/devices.md)."""
    return DeviceCatalog(
        root=config.device_root,
        configured=(*config.gpio, *config.devices),
        shared=frozenset(config.shared_devices),
        streamed=frozenset(config.device_streams),
    )


def detect_devices(config: AgentConfig) -> list[str]:
    """The names and paths of the devices found now: serial ports, video, GPIO chips, USB,
    GPUs, and the GPIO paths and extra devices from the config that exist."""
    return device_catalog(config).facts()[0]


def gather_facts(config: AgentConfig, runtimes: list[str]) -> NodeFacts:
    """The node's facts for its hello."""
    disk = shutil.disk_usage(_existing(config.state_dir))
    devices, device_info = device_catalog(config).facts()
    return NodeFacts(
        device_id=f"{socket.gethostname()}/{mac_address()}"[:256],
        hostname=socket.gethostname()[:256],
        arch=platform.machine()[:32] or "unknown",
        cpu_count=os.cpu_count() or 1,
        cpu_model=_cpu_model(),
        memory_bytes=procfs.memory()[0],
        disk_bytes=disk.total,
        os=_os_name(),
        kernel=platform.release()[:128],
        location=config.location,
        labels=dict(config.labels),
        runtimes=sorted(runtimes),
        devices=devices,
        device_info=device_info,
        site=config.site,
        agent_version=AGENT_VERSION,
    )


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def sample_usage(state_dir: Path) -> Usage:
    """CPU (since the last call), memory, disk of the state dir's filesystem, load."""
    total, available = procfs.memory()
    disk = shutil.disk_usage(_existing(state_dir))
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = 0.0
    return Usage(
        cpu_percent=_CPU.percent(),
        memory_used_bytes=total - available,
        memory_total_bytes=total,
        disk_used_bytes=disk.used,
        disk_total_bytes=disk.total,
        load1=max(load1, 0.0),
    )
