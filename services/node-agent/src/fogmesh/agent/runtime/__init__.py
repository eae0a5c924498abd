"""Runtime plugins of the node agent: run workloads as Docker containers or native processes.

:class:`Runtime` is the plugin interface (after fog05); :class:`DockerRuntime` and
:class:`NativeRuntime` implement it. Instances are keyed by :func:`workload_key`
(``{tenant}/{name}``). Every error a plugin raises is a :class:`RuntimeFailure`.
"""

from fogmesh.agent.runtime.base import (
    InstanceState,
    InstanceStatus,
    Runtime,
    Usage,
    split_key,
    workload_env,
    workload_key,
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
from fogmesh.agent.runtime.native_isolation import NativeIsolation

__all__ = [
    "DockerRuntime",
    "InstanceExists",
    "InstanceNotFound",
    "InstanceState",
    "InstanceStatus",
    "NativeIsolation",
    "NativeRuntime",
    "PrepareFailed",
    "Runtime",
    "RuntimeFailure",
    "RuntimeUnavailable",
    "UnsafePath",
    "Usage",
    "split_key",
    "translate_errors",
    "workload_env",
    "workload_key",
    "workload_labels",
]
