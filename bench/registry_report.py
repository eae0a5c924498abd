"""The registry bench's report: a run's flat record, whether it held (p99 lag < 1 s, no
live node flapped) and its table for people."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["flat", "holds", "table"]


def flat(nodes: int, interval: float, db: str, m: dict[str, Any]) -> dict[str, Any]:
    """The run's record: the figures compared before / after, flat, then the details."""
    lag, base = m["lag"], m["broker_baseline"]
    return {
        "nodes": nodes,
        "interval_s": interval,
        "db": db,
        "offered_per_s": round(nodes / interval, 1),
        "ingest_per_s": m["ingest_per_s"],
        "lag_p50_ms": lag.get("p50_ms"),
        "lag_p99_ms": lag.get("p99_ms"),
        "live_nodes_not_online": max(m["flapped"], m["not_online_at_end"]),
        "broker_baseline_p50_ms": base.get("p50_ms"),
        "broker_baseline_p99_ms": base.get("p99_ms"),
        **m,
    }


def holds(result: dict[str, Any]) -> bool:
    p99 = result["lag_p99_ms"]
    return p99 is not None and p99 < 1000 and result["live_nodes_not_online"] == 0


def table(r: dict[str, Any]) -> str:
    """The run beside its baselines, for people."""
    rows = [
        ("fleet", f"{r['nodes']} nodes every {r['interval_s']} s on {r['db']}"),
        ("join (hello storm -> all stored)", f"{r['join_s']} s"),
        ("ingest / offered", f"{r['ingest_per_s']} / {r['offered_per_s']} heartbeats/s"),
        ("registry CPU", f"{r['registry_cpu_percent']}% of one core"),
        ("lag p50 / p99 (into the database)", f"{r['lag_p50_ms']} / {r['lag_p99_ms']} ms"),
        (
            "  broker baseline p50 / p99",
            f"{r['broker_baseline_p50_ms']} / {r['broker_baseline_p99_ms']} ms",
        ),
        ("live nodes ever not online", str(r["live_nodes_not_online"])),
        ("  flaps by phase (replica kind: n)", json.dumps(r.get("flaps_by_phase", {}))),
        ("  longest silence judged", f"{r.get('flap_silent_max_s')} s"),
        (
            "  flapped with heartbeats not stored",
            f"{r.get('flapped_with_heartbeats_not_stored')} of {r.get('flapped_checked')}"
            f" ({r.get('heartbeats_not_stored_of_flapped')} heartbeats)",
        ),
        ("nodes joined more than once", str(r.get("joined_more_than_once"))),
        ("registry replicas / failover", f"{r['replicas']} / {r['failover_s']} s"),
        ("simulator wheel late at worst", f"{r['sim_max_late_s']} s"),
        ("load average before / after", "{before} / {after}".format(**r["load_average"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
