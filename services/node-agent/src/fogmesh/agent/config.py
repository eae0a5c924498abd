"""The agent's configuration: one pydantic model, read from a YAML / JSON file and CLI flags.

Precedence: built-in defaults < the file (``--config``) < command-line flags. Example file::

    node_id: truck-17            # default: {hostname}-{MAC}
    broker: {host: site-broker.local, port: 8883, username: truck-17, password: s3cret,
             tls: true, ca_file: /etc/fogmesh/ca.pem}   # fogmesh.service.BrokerSettings
    state_dir: /var/lib/fogmesh-agent
    heartbeat_interval_s: 5      # sample usage, look for news (a heartbeat only when there is)
    heartbeat_max_interval_s: 300
    heartbeat_usage_wait_s: 60   # usage-only news waits this long (default max / 5)
    reconcile_interval_s: 5
    labels: {zone: north, gpu: "true"}
    location: {lat: 48.85, lon: 2.35}
    gpio: [/sys/class/gpio/gpio17]
    runtimes: [docker, native]
    container_prefix: null       # default fm-{node}-
    allow_operator_commands: false
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fogmesh.agent.runtime.native_isolation import NativeIsolation
from fogmesh.protocol import Ident, Location, RuntimeKind
from fogmesh.protocol.lan import normalise_fingerprint
from fogmesh.service import BrokerSettings

__all__ = [
    "AgentBrokerSettings",
    "AgentConfig",
    "BrokerSettings",
    "DiscoverySettings",
    "load_config",
]


class AgentBrokerSettings(BrokerSettings):
    """The agent's ``broker:`` block: the shared settings with a small outbox (a node holds
    little while its broker is away; heartbeats and state supersede each other)."""

    outbox_limit: int = Field(default=1000, ge=1, description="messages held while away")


class DiscoverySettings(BaseModel):
    """The agent's ``discovery:`` block (docs/agent.md, "Finding the site broker"); the browsing
    itself, :mod:`fogmesh.agent.discovery`, is imported only by an agent that uses it."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="find the broker by mDNS at start")
    site: str | None = Field(default=None, description="the trusted site: preferred")
    fingerprint: str | None = Field(
        default=None, description="the trusted broker certificate's SHA-256: required"
    )
    timeout_s: float = Field(default=30.0, gt=0, description="how long to look")
    settle_s: float = Field(default=2.0, ge=0, description="after a first answer, wait for more")

    @field_validator("fingerprint")
    @classmethod
    def _fp(cls, value: str | None) -> str | None:
        return None if value is None else normalise_fingerprint(value)


class AgentConfig(BaseModel):
    """Everything the node agent is told."""

    model_config = ConfigDict(extra="forbid")

    node_id: Ident | None = Field(default=None, description="default: {hostname}-{MAC}")
    broker: AgentBrokerSettings = Field(default_factory=AgentBrokerSettings)
    discovery: DiscoverySettings = Field(
        default_factory=DiscoverySettings, description="find the broker by mDNS (off)"
    )
    state_dir: Path = Path("/var/lib/fogmesh-agent")
    heartbeat_interval_s: float = Field(
        default=5.0, gt=0, description="how often usage is sampled and news looked for"
    )
    # fogmesh.agent.heartbeat: a heartbeat goes out on news (a workload's status, usage moved by
    # the deadband) or after heartbeat_max_interval_s; false: every heartbeat_interval_s, with
    # every workload's status (the previous design)
    heartbeat_on_change: bool = True
    heartbeat_max_interval_s: float = Field(
        default=300.0, gt=0, description="the longest gap between two heartbeats (on change)"
    )
    heartbeat_deadband_percent: float = Field(
        default=5.0, ge=0, le=100, description="usage moved this much is news (percent of total)"
    )
    heartbeat_usage_wait_s: float | None = Field(
        default=None,
        ge=0,
        description="how long usage-only news waits after the last heartbeat (default: a fifth"
        " of heartbeat_max_interval_s; never more than it)",
    )
    reconcile_interval_s: float = Field(default=5.0, gt=0)
    retry_base_s: float = Field(default=1.0, gt=0, description="first failure back-off")
    retry_cap_s: float = Field(default=60.0, gt=0, description="longest failure back-off")
    stop_timeout_s: float = Field(default=10.0, ge=0)
    # the node asks (fogmesh.agent.trouble): its workloads should move off when the state dir's
    # disk is this full or a runtime fails; asked again every trouble_repeat_s while it lasts
    trouble_disk_percent: float = Field(default=95.0, gt=0, le=100)
    trouble_repeat_s: float = Field(default=60.0, gt=0)
    # fetched artefacts (.blobs/) and loaded image refs no workload names are dropped once
    # unused this long, checked every blob_sweep_s (fogmesh.agent.blob_gc)
    blob_grace_s: float = Field(default=3600.0, ge=0)
    blob_sweep_s: float = Field(default=600.0, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)
    location: Location | None = None
    site: str = Field(default="", max_length=128)
    gpio: list[str] = Field(default_factory=list, description="GPIO paths reported as devices")
    devices: list[str] = Field(default_factory=list, description="more device paths to report")
    device_root: Path = Field(
        default=Path("/"), description="where the device scan looks for dev/ and sys/"
    )
    shared_devices: list[str] = Field(
        default_factory=list, description="device names or paths several workloads may share"
    )
    device_streams: list[str] = Field(
        default_factory=list, description="devices the agent reads and publishes to holders"
    )
    runtimes: list[RuntimeKind] = Field(
        default_factory=lambda: [RuntimeKind.DOCKER, RuntimeKind.NATIVE]
    )
    container_prefix: str | None = Field(default=None, description="default fm-{node}-")
    docker_url: str | None = None
    extra_labels: dict[str, str] = Field(
        default_factory=dict, description="labels put on every Docker object the agent makes"
    )
    allow_operator_commands: bool = Field(
        default=False,
        description="accept commands that name no tenant, acting as the operator on any workload",
    )
    workload_env: dict[str, str] = Field(
        default_factory=dict,
        description="variables every workload gets under its own env, e.g. its site broker",
    )
    docker_host_network: bool = Field(
        default=False,
        description="run containers on the host network (to reach a broker on loopback only)",
    )
    native_isolation: NativeIsolation = Field(
        default=NativeIsolation.AUTO,
        description="who native workloads run as: auto, tenant-user, agent-user or refuse",
    )
    native_cgroup_parent: Path | None = Field(
        default=Path("/sys/fs/cgroup/fogmesh"),
        description="cgroup v2 directory for native workloads' cgroups (null: none)",
    )
    workload_usage: bool = Field(
        default=True, description="sample each workload's CPU / memory for the heartbeat"
    )
    log_level: str = "info"

    @model_validator(mode="after")
    def _sane(self) -> AgentConfig:
        if self.retry_base_s > self.retry_cap_s:
            raise ValueError("retry_base_s must not exceed retry_cap_s")
        if len(set(self.runtimes)) != len(self.runtimes):
            raise ValueError("runtimes must not repeat")
        return self


def _read_file(path: Path) -> dict[str, Any]:
    """The file's mapping: JSON for ``.json``, otherwise YAML. A YAML file written in JSON
    syntax (JSON is YAML; ``deploy/agent/install.sh`` writes one) is read without PyYAML,
    which an agent would keep loaded, 1.0 MB resident (docs/agent.md, "Memory")."""
    text = path.read_text()
    data: Any
    try:
        data = json.loads(text)
    except ValueError:
        if path.suffix.lower() == ".json":
            raise
        import yaml

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the configuration must be a mapping")  # noqa: TRY004
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> AgentConfig:
    """Defaults, then the file at ``path`` (YAML, or JSON for ``.json``), then ``overrides``
    (nested dicts merge: ``{"broker": {"port": 1884}}`` keeps the file's broker host)."""
    data: dict[str, Any] = _read_file(path) if path is not None else {}
    if overrides:
        data = _merge(data, overrides)
    return AgentConfig.model_validate(data)
