"""Runtime plugins of the node agent: run workloads as Docker containers or native processes.

:class:`Runtime` is the plugin interface (after fog05); :class:`DockerRuntime` and
:class:`NativeRuntime` implement it. Every error a plugin raises is a :class:`RuntimeFailure`.
"""

from fogmesh.agent.runtime.base import (
    InstanceState,
    InstanceStatus,
    Runtime,
    Usage,
    workload_env,
    workload_labels,
)
from fogmesh.agent.runtime.docker import DockerRuntime
from fogmesh.agent.runtime.errors import (
    InstanceExists,
    InstanceNotFound,
    PrepareFailed,
    RuntimeFailure,
    RuntimeUnavailable,
    UnsafePath,
    translate_errors,
)
from fogmesh.agent.runtime.native import NativeRuntime

__all__ = [
    "DockerRuntime",
    "InstanceExists",
    "InstanceNotFound",
    "InstanceState",
    "InstanceStatus",
    "NativeRuntime",
    "PrepareFailed",
    "Runtime",
    "RuntimeFailure",
    "RuntimeUnavailable",
    "UnsafePath",
    "Usage",
    "translate_errors",
    "workload_env",
    "workload_labels",
]
