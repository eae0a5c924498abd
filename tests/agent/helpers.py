"""Desired-state builders for the agent tests."""

from __future__ import annotations

import json
from typing import Any

from fogmesh.protocol import RuntimeKind, Usage, WorkloadPhase, WorkloadStatus

__all__ = [
    "GIB",
    "desired",
    "docker_workload",
    "native_workload",
    "sampled_status",
    "sampled_usage",
]


def docker_workload(
    name: str, tenant: str, image: str, *, env: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """A docker workload that sleeps (and stops at once on SIGTERM)."""
    return {
        "name": name,
        "tenant": tenant,
        "app": extra.pop("app", "app"),
        "component": extra.pop("component", name.replace("_", "-")),
        "runtime": "docker",
        "image": image,
        "command": [
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo started $FOGMESH_WORKLOAD; while true; do sleep 1; done",
        ],
        "env": env or {},
        **extra,
    }


def native_workload(
    name: str, tenant: str, script: str, *, env: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """A native workload running a shell script file."""
    return {
        "name": name,
        "tenant": tenant,
        "app": extra.pop("app", "app"),
        "component": extra.pop("component", name),
        "runtime": "native",
        "executable": "/bin/sh",
        "command": [script],
        "env": env or {},
        **extra,
    }


def desired(node: str, generation: int, *workloads: dict[str, Any]) -> str:
    """A desired state as JSON text."""
    return json.dumps({"node": node, "generation": generation, "workloads": list(workloads)})


GIB = 1 << 30


def sampled_usage(cpu: float = 2.0, memory: int = 2 * GIB) -> Usage:
    """A node's usage sample for the heartbeat policy's tests: 8 GiB of memory, 100 GiB of disk."""
    return Usage(
        cpu_percent=cpu,
        memory_used_bytes=memory,
        memory_total_bytes=8 * GIB,
        disk_used_bytes=10 * GIB,
        disk_total_bytes=100 * GIB,
    )


def sampled_status(
    phase: WorkloadPhase = WorkloadPhase.RUNNING, cpu: float = 0.0
) -> WorkloadStatus:
    """One native workload's status sample for the heartbeat policy's tests."""
    return WorkloadStatus(
        name="w", tenant="t", app="a", component="c", runtime=RuntimeKind.NATIVE,
        phase=phase, cpu_percent=cpu,
    )  # fmt: skip
