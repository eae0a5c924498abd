"""The paper's sensor app as ``fogmesh up`` deploys it: a native sensor and a convolver that
runs as a container when Docker is there and as a native process otherwise."""

from __future__ import annotations

import sys
from typing import Any

from fogmesh.protocol.manifest import AppManifest

__all__ = ["SAMPLE_IMAGE", "sample_manifest"]

SAMPLE_IMAGE = "fogmesh/sample-app:latest"


def sample_manifest(tenant: str, app: str, runtime: str, rate_hz: float = 2.0) -> AppManifest:
    """The manifest: sensor -> ``in`` -> convolve -> ``out``, on two different nodes."""
    python = sys.executable  # the sample app is installed beside fogmesh in this environment
    convolve: dict[str, Any]
    if runtime == "docker":
        convolve = {"runtime": "docker", "image": SAMPLE_IMAGE}
    else:
        convolve = {
            "runtime": "native",
            "executable": python,
            "command": ["-m", "fogmesh_sample.convolve"],
        }
    return AppManifest.model_validate(
        {
            "name": app,
            "tenant": tenant,
            "version": "1",
            "description": "the paper's sample app: 50x50 readings, sliding-window convolution",
            "components": [
                {
                    "name": "sensor",
                    "runtime": "native",
                    "executable": python,
                    "command": ["-m", "fogmesh_sample.sensor"],
                    "env": {"FM_RATE_HZ": str(rate_hz)},
                    "outputs": ["in"],
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                },
                {
                    "name": "convolve",
                    **convolve,
                    "inputs": ["in"],
                    "outputs": ["out"],
                    "requests": {"cpu": "200m", "memory": "64Mi"},
                    "limits": {"memory": "256Mi"},
                    "anti_affinity": ["sensor"],
                },
            ],
        }
    )
