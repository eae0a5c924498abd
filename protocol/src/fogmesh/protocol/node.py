"""What a node says about itself: hello (facts), state (online / offline), heartbeat (usage)."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import ConfigDict, Field, field_validator

from fogmesh.protocol._ids import Ident
from fogmesh.protocol._model import Model
from fogmesh.protocol.envelope import Envelope
from fogmesh.protocol.workload import WorkloadStatus

__all__ = [
    "DeviceInfo",
    "Heartbeat",
    "Location",
    "NodeFacts",
    "NodeHello",
    "NodeLiveness",
    "NodeStateMessage",
    "Usage",
    "device_selector",
]


class Location(Model):
    """Where a node is, in WGS84 degrees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class DeviceInfo(Model):
    """One device a node has: its stable name, host path, kind and properties (docs/devices.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=256, description="stable, e.g. serial:ttyUSB0")
    path: str = Field(max_length=1024, description="the device node on the host")
    kind: str = Field(max_length=32, description="serial, video, gpio, usb, gpu or device")
    properties: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="e.g. vendor, product (from sysfs)"
    )
    shared: bool = Field(default=False, description="the node config lets workloads share it")

    def answers(self, request: str) -> bool:
        """Whether a manifest's device request names this device: by name, by host path, or
        by kind and properties (``serial[vendor=0403,product=6001]``, docs/devices.md)."""
        if request in (self.name, self.path):
            return True
        wanted = device_selector(request)
        return (
            wanted is not None
            and wanted[0] == self.kind
            and all(self.properties.get(key) == value for key, value in wanted[1].items())
        )


_SELECTOR = re.compile(r"([a-z]+)\[([^\[\]]*)\]")


def device_selector(request: str) -> tuple[str, dict[str, str]] | None:
    """``(kind, properties)`` of a request by properties (``serial[vendor=0403]``), or None
    when the request is a name or a path (or is not a well-formed selector)."""
    found = _SELECTOR.fullmatch(request)
    if found is None:
        return None
    props: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in found[2].split(","))):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip() or not value.strip():
            return None
        props[key.strip()] = value.strip()
    return found[1], props


class NodeFacts(Model):
    """A node's hardware and software, as reported in its hello."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(max_length=256, description="hostname-MAC, as in the paper")
    hostname: str = Field(default="", max_length=256)
    arch: str = Field(max_length=32, description="machine architecture, e.g. x86_64, aarch64")
    cpu_count: int = Field(ge=1)
    cpu_model: str = Field(default="", max_length=256)
    memory_bytes: int = Field(ge=0)
    disk_bytes: int = Field(ge=0)
    os: str = Field(default="", max_length=128)
    kernel: str = Field(default="", max_length=128)
    location: Location | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    runtimes: list[str] = Field(default_factory=list, description="e.g. docker, native")
    devices: list[str] = Field(
        default_factory=list, description="each device's name and path (what placement matches)"
    )
    device_info: list[DeviceInfo] = Field(
        default_factory=list, max_length=1024, description="each device in full"
    )
    site: str = Field(default="", max_length=128, description="the site broker it is joined to")
    agent_version: str = Field(default="", max_length=64)


class NodeHello(Envelope):
    """``nodes/{node}/hello`` (retained): the node's facts, sent when the agent starts."""

    node: Ident
    facts: NodeFacts
    boot_id: str = Field(default="", max_length=128, description="changes when the agent restarts")


class NodeLiveness(StrEnum):
    """What ``nodes/{node}/state`` says (``online`` / ``offline``), and ``unreachable``: the
    registry's judgement of a node whose site's WAN link is down (alive as far as anyone knows,
    but not heard; never published by a node)."""

    ONLINE = "online"
    OFFLINE = "offline"
    UNREACHABLE = "unreachable"


class NodeStateMessage(Envelope):
    """``nodes/{node}/state`` (retained): online at connect; the last will says offline."""

    node: Ident
    state: NodeLiveness
    boot_id: str = Field(default="", max_length=128)

    @field_validator("state")
    @classmethod
    def _said_by_a_node(cls, state: NodeLiveness) -> NodeLiveness:
        # only the registry judges a node unreachable; a node says online or offline
        if state is NodeLiveness.UNREACHABLE:
            raise ValueError("a node's state is online or offline")
        return state


class Usage(Model):
    """Resource use at one moment."""

    model_config = ConfigDict(extra="forbid")

    cpu_percent: float = Field(ge=0, description="percent of the whole node (0-100)")
    memory_used_bytes: int = Field(ge=0)
    memory_total_bytes: int = Field(ge=0)
    disk_used_bytes: int = Field(ge=0)
    disk_total_bytes: int = Field(ge=0)
    load1: float = Field(default=0.0, ge=0)


class Heartbeat(Envelope):
    """``nodes/{node}/heartbeat``: usage and the workloads' statuses, sent when they changed
    (beyond a deadband) and at least every ``interval_s`` (docs/agent.md, "Heartbeats").
    Sent without its defaults (``exclude_defaults``): an absent ``workloads`` is unchanged."""

    node: Ident
    seq: int = Field(ge=0, description="counts up from 0 at each agent start")
    interval_s: float = Field(gt=0, description="the next heartbeat comes within this many s")
    usage: Usage
    workloads: list[WorkloadStatus] | None = Field(
        default=None,
        description="each workload's status; absent: unchanged since this boot's last carried",
    )
