"""The archive a native instance's ``work/`` is unpacked from at create: the artefact's files
and, for a restore, the snapshot's ``state/``, so one helper process run as the workload's user
(:func:`~.native_user_io.unpack`) writes all of it.

Only ``state`` and the members under ``state/`` are taken from a snapshot (never a file next to
the artefact's), and a snapshot's ``state/`` replaces the artefact's own. The archive always
holds the ``state`` directory, so ``$FOGMESH_STATE_DIR`` exists even for an empty snapshot.
"""

from __future__ import annotations

import io
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

from fogmesh.agent.runtime.docker_state import copy_member

if TYPE_CHECKING:
    import tarfile

__all__ = ["work_archive"]


def _in_state(name: str) -> bool:
    normal = posixpath.normpath(name)
    return normal == "state" or normal.startswith("state/")


def work_archive(artefact: Path | None, snapshot: tarfile.TarFile | None) -> bytes:
    """A tar of ``artefact``'s files (read as the agent: its own cache) under ``.``, the
    ``state`` directory, and ``snapshot``'s ``state/`` members (blocking)."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        if artefact is not None:

            def keep(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
                return None if snapshot is not None and _in_state(member.name) else member

            out.add(str(artefact), arcname=".", recursive=True, filter=keep)
        folder = tarfile.TarInfo("state")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o700
        out.addfile(folder)
        if snapshot is not None:
            for member in snapshot.getmembers():
                if _in_state(member.name) and not member.name.startswith("/"):
                    copy_member(out, snapshot, member, member.name)
    return buf.getvalue()
