"""Finding a native instance on disk and reading its status: the state the native runtime's
parts share (set by :class:`~fogmesh.agent.runtime.native.NativeRuntime`), an instance's
:class:`~.native_state.Layout` and spec by key, the user its workload runs as, and the
:class:`~fogmesh.agent.runtime.base.InstanceStatus` its files and recorded process make.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from fogmesh.agent.devices import DeviceCatalog
from fogmesh.agent.runtime.base import InstanceState, InstanceStatus, split_key, workload_labels
from fogmesh.agent.runtime.errors import InstanceNotFound
from fogmesh.agent.runtime.native_access import NativeAccess
from fogmesh.agent.runtime.native_isolation import RunAs
from fogmesh.agent.runtime.native_state import Layout, alive_process, read_json, shim_alive
from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec

__all__ = ["NativeLookup"]


class NativeLookup:
    """The state the native runtime's parts share and the lookups by instance key."""

    state_dir: Path
    node: str
    access: NativeAccess
    devices: DeviceCatalog

    def _layout(self, key: str) -> Layout:
        tenant, name = split_key(key)
        if not tenant:  # "/{dir}": an instance of the flat layout older agents made
            return Layout(self.state_dir / name)
        return Layout.of(self.state_dir, tenant, name)

    def _spec(self, key: str) -> WorkloadSpec:
        raw = read_json(self._layout(key).spec)
        if raw is None:
            raise InstanceNotFound(f"no native instance {key!r} in {self.state_dir}")
        return WorkloadSpec.model_validate(raw)

    async def _run_as(self, spec: WorkloadSpec) -> RunAs:
        return await asyncio.to_thread(self.access.run_as, spec.tenant)

    def _status(self, key: str) -> InstanceStatus:
        layout = self._layout(key)
        raw = read_json(layout.spec)
        if raw is None:
            return InstanceStatus(key, InstanceState.ABSENT, RuntimeKind.NATIVE)
        spec = WorkloadSpec.model_validate(raw)
        record, ended = read_json(layout.record), read_json(layout.exit)
        base = InstanceStatus(
            name=key,
            state=InstanceState.CREATED,
            runtime=RuntimeKind.NATIVE,
            spec_hash=spec.spec_hash(),
            labels=workload_labels(spec, self.node),
        )
        if record is not None:
            started = float(record.get("started_at") or 0) or None
            pid = str(record.get("pid", ""))
            # running until its shim has recorded the exit: the app's last output may still be
            # on its way to the log, and a new run must not start before the old shim is done
            if ended is None and (alive_process(record) is not None or shim_alive(record)):
                return replace(
                    base, state=InstanceState.RUNNING, started_at=started, runtime_id=pid
                )
            ended = ended or {}
            return replace(
                base,
                state=InstanceState.EXITED,
                exit_code=ended.get("exit_code"),
                started_at=started,
                finished_at=ended.get("finished_at"),
                runtime_id=pid,
            )
        if ended is not None:  # the shim could not even exec the program
            return replace(base, state=InstanceState.EXITED, exit_code=ended.get("exit_code"))
        return base
