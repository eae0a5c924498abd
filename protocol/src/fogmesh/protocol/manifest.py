"""The app manifest: what a tenant deploys.

A manifest (YAML or JSON) names an app, its version and its components; each component says
what to run (a Docker image, or a native executable / ``.tar`` artefact), what it needs (CPU and
memory requests and limits, devices, runtime) and where it may run (:class:`Placement`).
Unknown fields are refused, and a validation error names the failing field. See
``docs/manifest.md`` for a full example.

Label expressions (``placement.labels``), a small language over a node's labels, are parsed by
:mod:`fogmesh.protocol.manifest_labels`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator

from fogmesh.protocol._ids import MAX_ID_LENGTH, Ident
from fogmesh.protocol._model import Model
from fogmesh.protocol.errors import ContractError
from fogmesh.protocol.manifest_labels import LabelExpr, parse_label_expr
from fogmesh.protocol.manifest_limits import (
    MAX_ARCHES,
    MAX_COMMAND_ARGS,
    MAX_DEVICES,
    MAX_ENV_VARS,
    MAX_LABELS,
    MAX_REFS,
    MAX_STREAMS,
    MAX_VOLUMES,
    Arg,
    EnvName,
    EnvValue,
    LabelKey,
    LabelValue,
    Short,
    check_command_total,
    check_env_total,
)
from fogmesh.protocol.node import Location
from fogmesh.protocol.workload import (
    Artefact,
    DeviceLossPolicy,
    MigrationKind,
    RestartPolicy,
    RuntimeKind,
    VolumeSpec,
)

__all__ = [
    "AppManifest",
    "ComponentSpec",
    "Cpu",
    "LabelExpr",
    "Memory",
    "Near",
    "Placement",
    "Resources",
    "load_manifest_text",
    "parse_cpu",
    "parse_label_expr",
    "parse_memory",
]

# --- label expressions -------------------------------------------------------------------------


def _check_expr(text: str) -> str:
    try:
        parse_label_expr(text)
    except ContractError as exc:
        raise ValueError(f"bad label expression: {exc}") from exc
    return text


# --- quantities --------------------------------------------------------------------------------

_MEM_UNITS = {
    "": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
}  # fmt: skip
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)


def parse_memory(value: object) -> int:
    """Bytes from an int or a string such as ``"256Mi"``, ``"1G"``, ``"512k"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (match := _MEM_RE.match(value)):
        return int(float(match[1]) * _MEM_UNITS[(match[2] or "").lower()])
    raise ValueError(f"memory must be a number of bytes or a string like '256Mi', not {value!r}")


def parse_cpu(value: object) -> float:
    """Cores from a number or a string such as ``"500m"`` (milli-cores) or ``"1.5"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            pass
    raise ValueError(f"cpu must be a number of cores or a string like '500m', not {value!r}")


Cpu = Annotated[float, BeforeValidator(parse_cpu), Field(ge=0, le=4096)]
"""Cores: a number, or a string of milli-cores such as ``"500m"``."""
Memory = Annotated[int, BeforeValidator(parse_memory), Field(ge=0)]
"""Bytes: a number, or a string such as ``"256Mi"`` or ``"1G"``."""

# --- the manifest ------------------------------------------------------------------------------


class _Strict(Model):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """CPU (cores, or ``"500m"``) and memory (bytes, or ``"256Mi"``)."""

    cpu: Cpu | None = None
    memory: Memory | None = None


class Near(_Strict):
    """Run within ``radius_km`` of a point (great-circle distance to the node's location)."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_km: float = Field(gt=0)


class Placement(_Strict):
    """Hard constraints on the node: every one set must hold."""

    arch: list[Short] = Field(
        default_factory=list, max_length=MAX_ARCHES, description="any of these architectures"
    )
    labels: Annotated[str, AfterValidator(_check_expr)] | None = Field(
        default=None, max_length=4096, description="a label expression (see module docs)"
    )
    near: Near | None = None
    devices: list[Short] = Field(
        default_factory=list, max_length=MAX_DEVICES, description="the node must have each"
    )
    on_device_lost: DeviceLossPolicy | None = Field(
        default=None,
        description="when a device given goes away: stay (the default) or migrate to a node"
        " with an equal device (a component's own setting over the app's)",
    )
    node: Ident | None = Field(default=None, description="pin to this node")

    def label_expr(self) -> LabelExpr | None:
        """The parsed label expression, if any."""
        return None if self.labels is None else parse_label_expr(self.labels)


DEFAULT_REQUESTS = Resources(cpu=0.1, memory=64 * 2**20)


class ComponentSpec(_Strict):
    """One component of an app; it runs as ``replicas`` workloads ``{app}-{component}-{i}``."""

    name: Ident
    runtime: RuntimeKind = RuntimeKind.DOCKER
    image: str | None = Field(default=None, max_length=512)
    image_ref: str | None = Field(
        default=None,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="an image pushed to the artefact store as `docker save` output",
    )
    executable: str | None = Field(default=None, max_length=1024)
    artefact: Artefact | None = Field(default=None, description="a .tar and its command script")
    command: Annotated[list[Arg], AfterValidator(check_command_total)] = Field(
        default_factory=list, max_length=MAX_COMMAND_ARGS
    )
    env: Annotated[dict[EnvName, EnvValue], AfterValidator(check_env_total)] = Field(
        default_factory=dict, max_length=MAX_ENV_VARS
    )
    requests: Resources = DEFAULT_REQUESTS
    limits: Resources = Resources()
    volumes: list[VolumeSpec] = Field(default_factory=list, max_length=MAX_VOLUMES)
    inputs: list[Ident] = Field(
        default_factory=list, max_length=MAX_STREAMS, description="streams data/{t}/{app}/{s}"
    )
    outputs: list[Ident] = Field(default_factory=list, max_length=MAX_STREAMS)
    restart: RestartPolicy = RestartPolicy.ALWAYS
    replicas: int = Field(default=1, ge=0, le=1000)
    migration: MigrationKind = MigrationKind.COLD
    placement: Placement = Placement()
    affinity: list[Ident] = Field(
        default_factory=list, max_length=MAX_REFS, description="share a node with these"
    )
    anti_affinity: list[Ident] = Field(
        default_factory=list,
        max_length=MAX_REFS,
        description="never share a node with these (self: one per node)",
    )
    latency_budget_ms: float | None = Field(default=None, gt=0)
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS)
    partition_tolerance_s: float | None = Field(
        default=None,
        ge=0,
        description="how long a replica stays on a node cut off by its site's link before it "
        "is placed again elsewhere (None: forever, the site still runs it)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ComponentSpec:
        if self.runtime is RuntimeKind.DOCKER and not (self.image or self.image_ref):
            raise ValueError("a docker component needs an image or an image_ref")
        if self.runtime is RuntimeKind.NATIVE and not (self.executable or self.artefact):
            raise ValueError("a native component needs an executable or an artefact")
        for what in ("cpu", "memory"):
            req, lim = getattr(self.requests, what), getattr(self.limits, what)
            if req is not None and lim is not None and lim < req:
                raise ValueError(f"limits.{what} is below requests.{what}")
        if self.name in self.affinity:
            raise ValueError("a component cannot have affinity to itself")
        return self

    @property
    def cpu_request(self) -> float:
        """Requested cores (0 when unset)."""
        return self.requests.cpu or 0.0

    @property
    def memory_request(self) -> int:
        """Requested bytes (0 when unset)."""
        return self.requests.memory or 0


class AppManifest(_Strict):
    """An app: its name, owner, version, components and app-wide placement."""

    name: Ident
    tenant: Ident | None = Field(default=None, description="filled from the API topic if unset")
    version: str = Field(default="1", min_length=1, max_length=64)
    description: str = Field(default="", max_length=4096)
    data_source: Location | None = Field(default=None, description="latency is measured from it")
    latency_budget_ms: float | None = Field(default=None, gt=0, description="default per comp.")
    placement: Placement = Field(default=Placement(), description="applies to every component")
    components: list[ComponentSpec] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _references(self) -> AppManifest:
        names = [c.name for c in self.components]
        budgets = self.latency_budget_ms or any(c.latency_budget_ms for c in self.components)
        if budgets and self.data_source is None:
            raise ValueError("a latency budget needs data_source (where latency is measured from)")
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique: {names}")
        for comp in self.components:
            for ref in [*comp.affinity, *comp.anti_affinity]:
                if ref not in names:
                    raise ValueError(f"component {comp.name!r} refers to unknown {ref!r}")
            longest = f"{self.name}-{comp.name}-{max(comp.replicas - 1, 0)}"
            if len(longest) > MAX_ID_LENGTH:
                raise ValueError(f"workload name {longest[:40]}... exceeds {MAX_ID_LENGTH} chars")
        return self

    def component(self, name: str) -> ComponentSpec:
        """The component called ``name`` (``KeyError`` if none)."""
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(name)

    def latency_budget(self, comp: ComponentSpec) -> float | None:
        """The component's latency budget, else the app's."""
        return comp.latency_budget_ms or self.latency_budget_ms


def load_manifest_text(text: str, *, tenant: str | None = None) -> AppManifest:
    """Parse a manifest from YAML or JSON text (YAML needs PyYAML installed).

    Raises pydantic's ``ValidationError`` for a bad manifest and :class:`ContractError` for
    text that is neither JSON nor YAML of a mapping.
    """
    data: Any
    try:
        data = json.loads(text)
    except ValueError:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - pyyaml is a dependency of the users
            raise ContractError("manifest is not JSON and PyYAML is not installed") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ContractError(f"manifest is neither JSON nor YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError("a manifest must be a mapping at the top level")
    if tenant is not None and data.get("tenant") is None:
        data["tenant"] = tenant
    return AppManifest.model_validate(data)
