"""What a native workload may touch: its user, its directories' owners and modes, its cgroup.

:class:`NativeAccess` applies the operator's :class:`~.native_isolation.NativeIsolation` to the
native runtime's state directory (layout in :mod:`.native_state`):

* the state directory is 0711, its parent (the agent's own state directory) loses read and
  write for group and others, and each ancestor gets ``o+x`` (a state directory made 0700, as
  ``fogmesh up`` makes it, stays unlistable; every file in it stays 0600), and so do
  the directories holding the agent's own Python (native components are often Python programs
  run with it, as the sample app is), so a tenant's user can reach its ``work/`` and run them;
* ``{tenant}/`` and ``{tenant}/{dir}/`` are ``root:{tenant's group}`` 0710: only that tenant's
  user passes, nobody lists; ``run/``, ``logs/`` and the files in them are the agent's, 0700 /
  0600; ``work/`` is the tenant user's, 0700;
* the artefact cache ``.artefacts/`` is the agent's, 0700.
"""

from __future__ import annotations

import os
import stat
import sys
import urllib.parse
from pathlib import Path

from fogmesh.agent.runtime.errors import PrepareFailed
from fogmesh.agent.runtime.native_cgroup import CgroupParent
from fogmesh.agent.runtime.native_isolation import (
    NativeIsolation,
    RunAs,
    TenantUsers,
    grant_traversal,
    readable_by_anyone,
)
from fogmesh.agent.runtime.native_state import Layout
from fogmesh.agent.runtime.native_user_io import Owner, make_dirs
from fogmesh.protocol.workload import WorkloadSpec

__all__ = ["NativeAccess"]

_AGENT = RunAs(user="")


class NativeAccess:
    """The users, directory modes and cgroups of one native runtime's workloads."""

    def __init__(
        self,
        state_dir: Path,
        isolation: NativeIsolation = NativeIsolation.AUTO,
        cgroup_parent: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.mode = isolation.resolved()
        self._cgroup_parent = cgroup_parent
        self._users = TenantUsers()
        self._ready = False
        self.cgroups: CgroupParent | None = None

    @property
    def switches_user(self) -> bool:
        """Whether workloads run as their tenant's user (not as the agent's)."""
        return self.mode is NativeIsolation.TENANT_USER

    def refusal(self) -> str:
        """Why native workloads cannot run here at all ("" when they can)."""
        if self.mode is NativeIsolation.REFUSE:
            return "native workloads are refused on this node (native_isolation: refuse)"
        if self.switches_user and os.geteuid() != 0:
            return (
                "native workloads run as per-tenant users, which needs the agent to run as"
                " root (native_isolation: tenant-user)"
            )
        return ""

    def run_as(self, tenant: str) -> RunAs:
        """The account ``tenant``'s workloads run as (created if missing; blocking)."""
        why = self.refusal()
        if why:
            raise PrepareFailed(why)
        self.open()
        if not self.switches_user:
            return _AGENT
        self._grant_traversal()
        return self._users.ensure(tenant)

    @staticmethod
    def owner(run_as: RunAs) -> Owner:
        """What :mod:`.native_user_io` acts as for ``run_as``."""
        if run_as.uid is None or run_as.gid is None:
            return None
        return (run_as.uid, run_as.gid)

    def open(self) -> None:
        """Once: the state directory's modes, the traversal grants, the cgroup parent."""
        if self._ready:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cache = self.state_dir / ".artefacts"
        cache.mkdir(exist_ok=True)
        cache.chmod(0o700)
        if self.switches_user:
            self.state_dir.chmod(0o711)
            _no_listing(self.state_dir.parent)  # the agent's own state directory
        if self._cgroup_parent is not None and os.geteuid() == 0:
            self.cgroups = CgroupParent.open(self._cgroup_parent)
        self._ready = True

    def check_local_artefact(self, spec: WorkloadSpec) -> None:
        """Refuse a ``file://`` artefact not every user may read: the agent reads it as root,
        so a tenant could otherwise have any tar on the node unpacked into its directory."""
        url = urllib.parse.urlparse((spec.artefact.url or "") if spec.artefact else "")
        if url.scheme != "file" or not self.switches_user:
            return
        path = Path(urllib.parse.unquote(url.path))
        if not readable_by_anyone(path):
            raise PrepareFailed(
                f"prepare {spec.name}: {path} is not readable by every user; a tenant's"
                " file:// artefact must be"
            )

    def _grant_traversal(self) -> None:
        # Before every step a workload's user takes, not once: a directory on the way may have
        # been closed again meanwhile (pytest, for one, resets its base temp dir to 0700).
        grant_traversal(self.state_dir.resolve())
        for python in {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve())}:
            grant_traversal(Path(python).resolve())
        grant_traversal(Path(__file__).resolve().parent)  # native_user_io.py runs as them

    def make_instance(self, layout: Layout, run_as: RunAs, *, state: bool = True) -> None:
        """The instance's directories with their owners and modes (blocking); ``work/state``
        too unless ``state`` is false (an unpack into ``work/`` that follows makes it)."""
        gid = run_as.gid if run_as.gid is not None else -1
        for folder in (layout.tenant_dir, layout.root):
            folder.mkdir(mode=0o700, exist_ok=True)
            if run_as.switches:
                os.chown(folder, 0, gid)
                folder.chmod(0o710)
        for folder in (layout.run, layout.logs):
            folder.mkdir(mode=0o700, exist_ok=True)
        # work/ itself cannot be swapped for a link: its parent is the agent's
        layout.work.mkdir(mode=0o700, exist_ok=True)
        if run_as.uid is not None:
            os.chown(layout.work, run_as.uid, gid)
        layout.work.chmod(0o700)
        if state:
            make_dirs(self.owner(run_as), layout.state)


def _no_listing(folder: Path) -> None:
    """Drop group / other read and write from ``folder`` if it is the agent's own."""
    info = folder.stat()
    if info.st_uid == os.geteuid():
        folder.chmod(stat.S_IMODE(info.st_mode) & ~0o066 | 0o001)
