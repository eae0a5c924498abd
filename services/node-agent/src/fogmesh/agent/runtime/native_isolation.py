"""Who a native workload runs as: one unprivileged system user per tenant.

A tenant's native workloads run as the system account ``fm-t-{tenant}`` (its own group of the
same name, no supplementary groups, no login shell, no home), which the agent creates with
``useradd --system`` the first time the tenant needs it; an operator may create the account
beforehand (any uid but 0). Two tenants never share an account, so a workload can read neither
another tenant's files nor the agent's (root's) state.

:class:`NativeIsolation` is the operator's choice (``native_isolation`` in the agent config):

* ``auto`` (default): ``tenant-user`` when the agent runs as root, else ``agent-user``;
* ``tenant-user``: per-tenant users; an agent that is not root refuses native workloads;
* ``agent-user``: every workload runs as the agent's own user (a single-tenant or trusted node,
  or an agent that is not root: the workload can then do what the agent can);
* ``refuse``: no native workloads at all.

A per-tenant user must reach its working directory and its executable: :func:`grant_traversal`
adds the search bit for others (``o+x``, never read or write) to the directories on the way, so
a state directory made 0700 stays unlistable while a workload can pass through it.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import structlog

from fogmesh.agent.runtime.errors import PrepareFailed

__all__ = [
    "NativeIsolation",
    "RunAs",
    "TenantUsers",
    "account_name",
    "grant_traversal",
    "readable_by_anyone",
]

log = structlog.get_logger("fogmesh.agent.runtime.native")

ACCOUNT_PREFIX = "fm-t-"
_MAX_ACCOUNT = 32  # useradd's (and utmp's) limit on a user name
_PLAIN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class NativeIsolation(StrEnum):
    """How the native runtime separates tenants (see the module docstring)."""

    AUTO = "auto"
    TENANT_USER = "tenant-user"
    AGENT_USER = "agent-user"
    REFUSE = "refuse"

    def resolved(self) -> NativeIsolation:
        """``auto`` made concrete for this process (root or not)."""
        if self is NativeIsolation.AUTO:
            return NativeIsolation.TENANT_USER if os.geteuid() == 0 else NativeIsolation.AGENT_USER
        return self


@dataclass(frozen=True)
class RunAs:
    """The account a workload runs as (``None`` uid / gid: the agent's own)."""

    user: str
    uid: int | None = None
    gid: int | None = None

    @property
    def switches(self) -> bool:
        """Whether the shim must drop to another user."""
        return self.uid is not None


def account_name(tenant: str) -> str:
    """``fm-t-{tenant}``, or, when the tenant id is not a plain lower-case user name or would be
    too long, a cleaned prefix of it plus a hash of the whole id (distinct tenants never share
    an account)."""
    plain = ACCOUNT_PREFIX + tenant
    if _PLAIN.match(tenant) and len(plain) <= _MAX_ACCOUNT:
        return plain
    cleaned = re.sub(r"[^a-z0-9_-]", "_", tenant.lower())[:14]
    return f"{ACCOUNT_PREFIX}{cleaned}-{hashlib.sha256(tenant.encode()).hexdigest()[:10]}"


class TenantUsers:
    """Finds or creates each tenant's system account (thread-safe: creates run in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, RunAs] = {}

    def ensure(self, tenant: str) -> RunAs:
        """The tenant's account, created with ``useradd --system`` if missing."""
        with self._lock:
            known = self._known.get(tenant)
            if known is not None:
                return known
            name = account_name(tenant)
            entry = self._lookup(name) or self._create(name, tenant)
            if entry.pw_uid == 0 or entry.pw_gid == 0:
                raise PrepareFailed(f"account {name} of tenant {tenant!r} is privileged (uid 0)")
            run_as = RunAs(user=name, uid=entry.pw_uid, gid=entry.pw_gid)
            self._known[tenant] = run_as
            return run_as

    @staticmethod
    def _lookup(name: str) -> pwd.struct_passwd | None:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return None

    def _create(self, name: str, tenant: str) -> pwd.struct_passwd:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise PrepareFailed(f"cannot create account {name}: no useradd on this node")
        # the tenant id goes nowhere near a shell; the comment is only for the operator
        comment = re.sub(r"[^A-Za-z0-9 ._-]", "_", f"fogmesh tenant {tenant}")[:64]
        done = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                comment,
                name,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        entry = self._lookup(name)  # also made meanwhile by another agent on this host
        if entry is None:
            why = (done.stderr or done.stdout).strip()[:300]
            raise PrepareFailed(f"cannot create account {name}: useradd: {why}")
        log.info("created tenant account", tenant=tenant, account=name, uid=entry.pw_uid)
        return entry


def grant_traversal(path: Path, *, stop_at: Path | None = None) -> list[Path]:
    """Add ``o+x`` to ``path`` and each of its ancestors (up to ``stop_at``, or ``/``) that
    lack it; return the directories changed. Read and write bits are never added."""
    changed = []
    for folder in [path, *path.parents]:
        if stop_at is not None and not folder.is_relative_to(stop_at):
            break
        try:
            mode = folder.stat().st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            try:
                folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            except OSError as exc:
                log.warning("cannot make directory traversable", path=str(folder), error=str(exc))
                continue
            changed.append(folder)
    if changed:
        log.warning(
            "made directories traversable (o+x) for native workloads' users",
            paths=[str(p) for p in changed],
        )
    return changed


def readable_by_anyone(path: Path) -> bool:
    """Whether every user may read the file ``path`` (``o+r`` on it, ``o+x`` on each directory
    above): the agent reads ``file://`` artefacts as root, so a tenant may name only these."""
    try:
        if not path.stat().st_mode & stat.S_IROTH:
            return False
        return all(folder.stat().st_mode & stat.S_IXOTH for folder in path.parents)
    except OSError:
        return False
