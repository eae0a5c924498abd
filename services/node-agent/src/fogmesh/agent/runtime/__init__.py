"""Runtime plugins of the node agent: run workloads as Docker containers or native processes.

:class:`Runtime` is the plugin interface (after fog05); :class:`DockerRuntime` and
:class:`NativeRuntime` implement it. Instances are keyed by :func:`workload_key`
(``{tenant}/{name}``). Every error a plugin raises is a :class:`RuntimeFailure`.

The two runtimes are imported on first use (module ``__getattr__``): an agent running only
native workloads never loads the Docker runtime, and a Docker-only agent not the native one's
modules (docs/agent.md, Memory). The Docker runtime speaks to the engine with the agent's own
small client (:mod:`fogmesh.agent.runtime.engine`), not aiodocker and aiohttp (8.6 MB resident).
"""

from typing import TYPE_CHECKING

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
from fogmesh.agent.runtime.errors import (
    InstanceExists,
    InstanceNotFound,
    PrepareFailed,
    RuntimeFailure,
    RuntimeUnavailable,
    UnsafePath,
    translate_errors,
)
from fogmesh.agent.runtime.native_isolation import NativeIsolation
from fogmesh.protocol._lazy import homes, lazy_exports

if TYPE_CHECKING:
    from fogmesh.agent.runtime.docker import DockerRuntime
    from fogmesh.agent.runtime.native import NativeRuntime

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


_HOMES = homes({"docker": "DockerRuntime", "native": "NativeRuntime"})

if not TYPE_CHECKING:  # a type checker sees the imports above instead
    __getattr__ = lazy_exports(__name__, globals(), _HOMES)
