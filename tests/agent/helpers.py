"""Desired-state builders for the agent tests."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["desired", "docker_workload", "native_workload"]


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
