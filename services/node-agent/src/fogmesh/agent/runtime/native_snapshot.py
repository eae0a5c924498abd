"""Snapshots of a native instance and their restore: a snapshot is a tar of ``work/state/``
(members ``state/...``) after the manifest (:mod:`.tarutil`); restore makes the instance with
that state (or replaces the state of one already there with the same spec). Both read and
write ``work/`` as the workload's own user (:mod:`.native_user_io`).

``tarfile`` is imported on first use: an idle agent never loads it (docs/agent.md, Memory).
"""

from __future__ import annotations

import asyncio
import io
import shutil
from typing import TYPE_CHECKING

from fogmesh.agent.runtime.base import InstanceStatus, workload_key
from fogmesh.agent.runtime.docker_state import repack, subtar
from fogmesh.agent.runtime.errors import InstanceNotFound, translate_errors
from fogmesh.agent.runtime.native_lookup import NativeLookup
from fogmesh.agent.runtime.native_user_io import pack, unpack
from fogmesh.agent.runtime.tarutil import read_manifest, write_manifest
from fogmesh.protocol.workload import WorkloadSpec

if TYPE_CHECKING:
    import tarfile

__all__ = ["NativeSnapshots"]


class NativeSnapshots(NativeLookup):
    """``snapshot`` and ``restore`` of the native runtime."""

    if TYPE_CHECKING:  # NativeRuntime's: create, with the snapshot's state in the same unpack

        async def _create(
            self, spec: WorkloadSpec, snapshot: tarfile.TarFile | None
        ) -> tuple[InstanceStatus, bool]: ...

    async def snapshot(self, key: str) -> bytes:
        """A tar of ``work/state/`` (members ``state/...``) after the manifest, read as the
        workload's user."""
        with translate_errors(f"snapshot {key}", missing=InstanceNotFound):
            spec = self._spec(key)
            owner = self.access.owner(await self._run_as(spec))
            state = await asyncio.to_thread(pack, owner, self._layout(key).state, "state")
            import tarfile

            buf = io.BytesIO()
            with (
                tarfile.open(fileobj=io.BytesIO(state), mode="r") as source,
                tarfile.open(fileobj=buf, mode="w") as out,
            ):
                write_manifest(out, {"runtime": "native", "workload": spec.name, "kind": "state"})
                repack(out, source, "", strip_first=False)
            return buf.getvalue()

    async def restore(self, spec: WorkloadSpec, snapshot: bytes) -> InstanceStatus:
        """Create the instance with the snapshot's ``work/state/`` (unpacked as the workload's
        user, with the artefact, in one go); an instance already there with this spec has its
        ``work/state/`` replaced."""
        import tarfile

        key = workload_key(spec.tenant, spec.name)
        with translate_errors(f"restore {spec.name}"):
            with tarfile.open(fileobj=io.BytesIO(snapshot), mode="r") as tar:
                read_manifest(tar, runtime="native")
                status, made = await self._create(spec, tar)
                if made:
                    return status
                state = self._layout(key).state
                owner = self.access.owner(await self._run_as(spec))
                if state.exists():
                    await asyncio.to_thread(shutil.rmtree, state)
                await asyncio.to_thread(unpack, owner, state, subtar(tar, "state/"))
            return status
