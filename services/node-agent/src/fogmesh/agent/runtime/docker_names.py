"""Docker object names and labels for fogmesh workloads.

Names (decided here, documented in the package docstring):

* container ``{prefix}{tenant}-{app}-{component}-{replica}``: the paper's
  ``{tenant}-{app}-{component}-{replica}``, behind a per-agent prefix that defaults to
  ``fm-{node}-`` so several agents on one host never collide (``prefix=""`` gives the paper's
  bare names);
* network ``fm-{tenant}``: one bridge network per tenant, shared by that tenant's workloads (and
  by every agent on the host);
* volume ``{container name}-{volume}``: one named volume per :class:`VolumeSpec` per instance.

Every name holds the tenant, so equal app names of two tenants never meet: since ids may hold
``-`` themselves (tenant ``a-b`` app ``c`` and tenant ``a`` app ``b-c``), a container name whose
parts contain ``-`` ends in a short hash of the parts, which keeps the two apart.

Docker allows ``[a-zA-Z0-9][a-zA-Z0-9_.-]*`` in names; any other character of an identifier is
replaced by ``_`` and a short hash of the original keeps distinct identifiers distinct.
"""

from __future__ import annotations

import hashlib
import re

from fogmesh.protocol.workload import WorkloadSpec

__all__ = ["container_name", "docker_safe", "network_name", "volume_name"]

_BAD = re.compile(r"[^a-zA-Z0-9_.-]")


def docker_safe(text: str) -> str:
    """``text`` usable inside a Docker object name (unchanged when it already is)."""
    cleaned = _BAD.sub("_", text)
    if cleaned == text:
        return text
    return f"{cleaned}_{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def container_name(spec: WorkloadSpec, prefix: str) -> str:
    """``{prefix}{tenant}-{app}-{component}-{replica}``, made safe for Docker (plus a hash of
    the parts when one of them holds ``-``)."""
    parts = (spec.tenant, spec.app, spec.component, str(spec.replica))
    name = prefix + "-".join(docker_safe(p) for p in parts)
    if any("-" in p for p in parts):
        name += "-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:6]
    return name if name[0].isalnum() else f"fm{name}"


def network_name(tenant: str) -> str:
    """``fm-{tenant}``: the tenant's bridge network."""
    return f"fm-{docker_safe(tenant)}"


def volume_name(container: str, volume: str) -> str:
    """``{container}-{volume}``: one instance's named volume."""
    return f"{container}-{docker_safe(volume)}"
