"""From a manifest's component to the :class:`WorkloadSpec` a node runs, and quota arithmetic."""

from __future__ import annotations

from fogmesh.protocol.manifest import AppManifest, ComponentSpec
from fogmesh.protocol.workload import DeviceLossPolicy, WorkloadSpec
from fogmesh.scheduler.placement import workload_name

__all__ = ["make_spec", "manifest_totals"]


def make_spec(
    tenant: str, manifest: AppManifest, comp: ComponentSpec, replica: int
) -> WorkloadSpec:
    """The spec of replica ``replica`` of ``comp``: named ``{app}-{component}-{replica}``."""
    return WorkloadSpec(
        name=workload_name(manifest.name, comp.name, replica),
        tenant=tenant,
        app=manifest.name,
        component=comp.name,
        replica=replica,
        app_version=manifest.version,
        runtime=comp.runtime,
        image=comp.image,
        image_ref=comp.image_ref,
        executable=comp.executable,
        artefact=comp.artefact,
        command=list(comp.command),
        env=dict(comp.env),
        cpu_limit=comp.limits.cpu or None,
        memory_limit_bytes=comp.limits.memory or None,
        restart_policy=comp.restart,
        volumes=list(comp.volumes),
        labels=dict(comp.labels),
        inputs=list(comp.inputs),
        outputs=list(comp.outputs),
        migration=comp.migration,
        devices=sorted({*manifest.placement.devices, *comp.placement.devices}),
        on_device_lost=comp.placement.on_device_lost
        or manifest.placement.on_device_lost
        or DeviceLossPolicy.STAY,
    )


def manifest_totals(manifest: AppManifest) -> tuple[int, float, int]:
    """(workloads, CPU cores, memory bytes) the manifest requests in all."""
    workloads = sum(c.replicas for c in manifest.components)
    cpu = sum(c.replicas * c.cpu_request for c in manifest.components)
    mem = sum(c.replicas * c.memory_request for c in manifest.components)
    return workloads, cpu, mem
