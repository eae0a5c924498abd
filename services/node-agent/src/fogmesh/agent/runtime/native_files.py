"""A native instance's files and logs: the rotated ``logs/app.log`` read back, and files
written into and read from ``work/`` as the workload's own user (:mod:`.native_user_io`),
never outside it (``UnsafePath``).
"""

from __future__ import annotations

import asyncio

from fogmesh.agent.runtime.errors import (
    InstanceNotFound,
    RuntimeFailure,
    UnsafePath,
    translate_errors,
)
from fogmesh.agent.runtime.native_io import read_logs
from fogmesh.agent.runtime.native_lookup import NativeLookup
from fogmesh.agent.runtime.native_user_io import read_file, write_file
from fogmesh.agent.runtime.tarutil import safe_join

__all__ = ["NativeFiles"]


class NativeFiles(NativeLookup):
    """``logs``, ``put_file`` and ``get_file`` of the native runtime."""

    async def logs(self, key: str, tail: int = 100, since: float | None = None) -> list[str]:
        """The last ``tail`` lines of the rotated logs (written after ``since`` if given)."""
        if tail <= 0:
            return []
        with translate_errors(f"logs {key}", missing=InstanceNotFound):
            self._spec(key)
            files = self._layout(key).log_files()
            return await asyncio.to_thread(read_logs, files, tail, since)

    async def put_file(self, key: str, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` relative to ``work/`` (``UnsafePath`` if it escapes), as
        the workload's user."""
        with translate_errors(f"put_file {key}:{path}", missing=InstanceNotFound):
            spec = self._spec(key)
            target = safe_join(self._layout(key).work, path)
            owner = self.access.owner(await self._run_as(spec))
            await asyncio.to_thread(write_file, owner, target, data, mode)

    async def get_file(self, key: str, path: str, limit: int) -> bytes:
        """Read ``path`` relative to ``work/`` (``UnsafePath`` if it escapes), as the
        workload's user."""
        with translate_errors(f"get_file {key}:{path}", missing=InstanceNotFound):
            spec = self._spec(key)
            target = safe_join(self._layout(key).work, path)
            owner = self.access.owner(await self._run_as(spec))
            try:
                data = await asyncio.to_thread(read_file, owner, target, limit)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError) or "No such file" in str(exc):
                    raise InstanceNotFound(f"no file {path}") from exc
                raise UnsafePath(f"cannot read {path}: {exc}") from exc
        if len(data) > limit:
            raise RuntimeFailure(f"{path} is larger than {limit} bytes")
        return data
