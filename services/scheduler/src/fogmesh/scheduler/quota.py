"""A tenant's quota against what its apps would request with one more manifest."""

from __future__ import annotations

from collections.abc import Iterable

from fogmesh.bus import Refusal
from fogmesh.protocol.errors import ErrorCode
from fogmesh.protocol.manifest import AppManifest
from fogmesh.scheduler.config import Quota
from fogmesh.scheduler.specs import manifest_totals
from fogmesh.scheduler.store import AppRecord

__all__ = ["check_quota"]


def check_quota(
    quota: Quota,
    apps: Iterable[tuple[str, AppRecord]],
    tenant: str,
    manifest: AppManifest,
    *,
    replacing: str | None,
) -> None:
    """Refuse (``quota_exceeded``, naming the resource) when ``tenant``'s apps among ``apps``
    (key, record), without the one of key ``replacing``, and ``manifest`` exceed ``quota``."""
    count, workloads, cpu, mem = 0, 0, 0.0, 0
    for key, app in apps:
        if app.tenant != tenant or key == replacing:
            continue
        count += 1
        n, c, m = manifest_totals(app.manifest)
        workloads, cpu, mem = workloads + n, cpu + c, mem + m
    n, c, m = manifest_totals(manifest)
    checks = [
        ("apps", count + 1, quota.max_apps),
        ("workloads", workloads + n, quota.max_workloads),
        ("cpu", cpu + c, quota.max_cpu),
        ("memory", mem + m, quota.max_memory),
    ]
    for what, total, limit in checks:
        if limit is not None and total > limit + 1e-9:
            raise Refusal(
                ErrorCode.QUOTA_EXCEEDED,
                f"tenant {tenant} would use {total:g} {what}, quota {limit:g}",
                details={"resource": what, "requested": total, "limit": limit},
            )
