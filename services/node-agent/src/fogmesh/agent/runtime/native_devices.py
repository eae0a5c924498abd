"""The devices of native workloads (docs/devices.md): each device a spec asks for, resolved by
the node's :class:`~fogmesh.agent.devices.DeviceCatalog`, gets an ACL entry for the tenant's
own user at start and loses it at remove, unless another instance of that tenant here still
holds the device. A device the shared reader streams gets no entry (the workload gets its
readings), nor does any device of a workload run as the agent's own user.
"""

from __future__ import annotations

import contextlib

from fogmesh.agent.devices import DeviceRefused, grant, revoke
from fogmesh.agent.runtime.base import workload_key
from fogmesh.agent.runtime.errors import RuntimeFailure
from fogmesh.agent.runtime.native_lookup import NativeLookup
from fogmesh.agent.runtime.native_state import read_json
from fogmesh.protocol.node import DeviceInfo
from fogmesh.protocol.workload import WorkloadSpec

__all__ = ["NativeDevices"]


class NativeDevices(NativeLookup):
    """Device access granted to and taken back from a native workload's user."""

    def _device_access(self, spec: WorkloadSpec, *, allow: bool) -> None:
        run_as = self.access.run_as(spec.tenant)
        if not run_as.switches or run_as.uid is None:
            return  # the agent's own user: it can open the devices already
        for name in spec.devices:
            try:
                info = self.devices.resolve(name)
            except DeviceRefused as exc:
                if allow:
                    raise RuntimeFailure(f"start {spec.name}: {exc}") from exc
                continue  # gone: nothing left to take back
            if self.devices.streams(info):
                continue  # the shared reader reads it; the workload gets its readings
            if allow:
                grant(info.path, run_as.uid)
            elif not self._tenant_peers_hold(spec, info):
                revoke(info.path, run_as.uid)  # the entry is the tenant user's, not one instance's

    def _tenant_peers_hold(self, spec: WorkloadSpec, info: DeviceInfo) -> bool:
        """Whether another instance of ``spec``'s tenant here was given device ``info`` (a
        shared device two of a tenant's workloads hold: removing one keeps the other's access);
        a peer's request by properties counts for the device the catalog resolves it to."""
        me = self._layout(workload_key(spec.tenant, spec.name))
        for path in me.tenant_dir.glob("*/spec.json"):
            raw = read_json(path)
            if path == me.spec or raw is None:
                continue
            for request in raw.get("devices") or []:
                with contextlib.suppress(DeviceRefused):
                    if self.devices.resolve(str(request)).name == info.name:
                        return True
        return False
