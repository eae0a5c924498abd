"""A workload container's ``HostConfig``: its limits, and nothing that reaches into the host.

A manifest has no field for privileges, host paths or host namespaces, and the agent adds none;
the only devices are those the workload's spec asked for and the node's catalog resolved
(docs/devices.md): :func:`host_config` builds the config and :func:`host_escapes` is the check every
config passes before it reaches Docker (so a future field cannot add one by accident).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fogmesh.agent.devices import container_path, device_rule, on_devpts
from fogmesh.agent.runtime.errors import RuntimeFailure
from fogmesh.protocol.node import DeviceInfo
from fogmesh.protocol.workload import WorkloadSpec

__all__ = ["host_config", "host_escapes"]

_HOST_NAMESPACES = ("PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode")


def host_config(
    spec: WorkloadSpec,
    network: str,
    mounts: Sequence[Mapping[str, str]],
    *,
    host_network_allowed: bool,
    devices: Sequence[DeviceInfo] = (),
) -> dict[str, Any]:
    """The ``HostConfig`` of ``spec``'s container on ``network`` with its named ``mounts``
    and the ``devices`` its spec asked for (resolved by the agent's device catalog).

    Raises :class:`RuntimeFailure` if the result would let the container reach the host.
    """
    config: dict[str, Any] = {
        "RestartPolicy": {"Name": "no"},
        "NetworkMode": network,
        "Mounts": [dict(m) for m in mounts],
        "Privileged": False,
        "SecurityOpt": ["no-new-privileges:true"],
    }
    if spec.cpu_limit is not None:
        config["NanoCpus"] = int(spec.cpu_limit * 1e9)
    if spec.memory_limit_bytes is not None:
        config["Memory"] = spec.memory_limit_bytes
    granted = sorted({str(Path(d.path).resolve()) for d in devices})
    for device in devices:
        host, inside = str(Path(device.path).resolve()), container_path(device)
        if on_devpts(device):
            config["Mounts"].append({"Type": "bind", "Source": host, "Target": inside})
        else:
            config.setdefault("Devices", []).append(
                {"PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": "rwm"}
            )
        config.setdefault("DeviceCgroupRules", []).append(device_rule(device))
    escapes = host_escapes(config, host_network_allowed=host_network_allowed, granted=granted)
    if escapes:
        raise RuntimeFailure(f"create {spec.name}: refused: {'; '.join(escapes)}")
    return config


def host_escapes(
    config: Mapping[str, Any], *, host_network_allowed: bool, granted: Sequence[str] = ()
) -> list[str]:
    """What in ``config`` would reach into the host (empty when nothing does); ``granted``
    are the host device paths the workload was given, the only devices or binds let through."""
    found = []
    if config.get("Privileged"):
        found.append("privileged mode")
    if config.get("Binds"):
        found.append("host paths (Binds)")
    for mount in config.get("Mounts") or []:
        device_bind = mount.get("Type") == "bind" and mount.get("Source") in granted
        if mount.get("Type") != "volume" and not device_bind:
            found.append(f"a {mount.get('Type')} mount of {mount.get('Source')}")
    ungranted = [d for d in config.get("Devices") or [] if d.get("PathOnHost") not in granted]
    if ungranted or config.get("DeviceRequests"):
        found.append("host devices not granted")
    if config.get("CapAdd"):
        found.append(f"added capabilities {config['CapAdd']}")
    if config.get("NetworkMode") == "host" and not host_network_allowed:
        found.append("the host network (not allowed by this node's docker_host_network)")
    for key in _HOST_NAMESPACES:
        if config.get(key) == "host":
            found.append(f"the host's {key[:-4].lower()} namespace")
    return found
