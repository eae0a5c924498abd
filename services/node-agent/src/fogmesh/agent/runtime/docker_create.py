"""What the engine is asked to create for a workload: its named volumes, and its container's
config (image, env, labels, network and aliases, command, and the ``HostConfig`` that
:func:`~.docker_config.host_config` builds and checks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fogmesh.agent.image_load import ref_image
from fogmesh.agent.runtime.base import (
    LABEL_APP,
    LABEL_COMPONENT,
    LABEL_NODE,
    LABEL_TENANT,
    LABEL_WORKLOAD,
    workload_labels,
)
from fogmesh.agent.runtime.docker_config import host_config as make_host_config
from fogmesh.agent.runtime.docker_names import docker_safe
from fogmesh.agent.runtime.docker_names import volume_name as make_volume_name
from fogmesh.agent.runtime.engine import Engine
from fogmesh.protocol.node import DeviceInfo
from fogmesh.protocol.workload import WorkloadSpec

__all__ = ["container_config", "create_volumes"]


async def create_volumes(
    docker: Engine, spec: WorkloadSpec, cname: str, *, node: str, extra_labels: Mapping[str, str]
) -> list[dict[str, str]]:
    """Create the named volume of each of ``spec``'s volumes for container ``cname`` (labelled
    with the workload, so a removal finds them) and return their mounts."""
    mounts = []
    for volume in spec.volumes:
        vname = make_volume_name(cname, volume.name)
        labels = {
            **extra_labels,
            LABEL_NODE: node,
            LABEL_TENANT: spec.tenant,
            LABEL_APP: spec.app,
            LABEL_COMPONENT: spec.component,
            LABEL_WORKLOAD: spec.name,
        }
        await docker.create_volume({"Name": vname, "Labels": labels})
        mounts.append({"Type": "volume", "Source": vname, "Target": volume.mount_path})
    return mounts


def container_config(
    spec: WorkloadSpec,
    *,
    node: str,
    extra_labels: Mapping[str, str],
    env: Mapping[str, str],
    network: str,
    mounts: Sequence[Mapping[str, str]],
    devices: Sequence[DeviceInfo],
    host_network: bool,
) -> dict[str, Any]:
    """The create config of ``spec``'s container on ``network`` (``host`` with
    ``host_network``, which is then the only network it may have) with ``mounts``, the
    ``devices`` the catalog gave and ``env``; labelled with the workload on ``node``.

    Raises :class:`~fogmesh.agent.runtime.errors.RuntimeFailure` if the host config would let
    the container reach the host.
    """
    labels = {**spec.labels, **extra_labels, **workload_labels(spec, node)}
    host_config = make_host_config(
        spec, network, mounts, host_network_allowed=host_network, devices=devices
    )
    aliases = sorted({docker_safe(spec.component), docker_safe(spec.name)})
    config: dict[str, Any] = {
        "Image": ref_image(spec.image_ref) if spec.image_ref else spec.image,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": labels,
        "HostConfig": host_config,
    }
    if not host_network:
        config["NetworkingConfig"] = {"EndpointsConfig": {network: {"Aliases": aliases}}}
    if spec.command:
        config["Cmd"] = list(spec.command)
    return config
