"""What a mesh bench run prints and writes: one end's figures on the terminal, and the JSON
result under ``bench/results/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["report", "write_results"]


def report(kind: str, r: dict[str, Any]) -> None:
    """Print one end's figures."""
    print(f"[cloud end: {kind}]")
    print(f"  direct publish      p50 {r['direct_p50_ms']:.2f} ms  p99 {r['direct_p99_ms']:.2f} ms")
    print(f"  through one hop     p50 {r['hop_p50_ms']:.2f} ms  p99 {r['hop_p99_ms']:.2f} ms")
    print(f"  added by the hop    p50 {r['added_p50_ms']:.2f} ms  p99 {r['added_p99_ms']:.2f} ms")
    print(f"  hop / direct p50    {r['hop_ratio']:.2f}x")
    print(
        f"  bridge throughput   {r['throughput_msg_s']:.0f} msg/s (QoS 1),"
        f" site CPU {r['burst_site_cpu_us_per_msg']:.0f} us/msg"
    )
    print(
        f"  partition drain     {r['drain_msg_s']:.0f} msg/s "
        f"({r['drained_msgs']} of {r['queued_msgs']} queued msgs arrived),"
        f" site CPU {r['drain_site_cpu_us_per_msg']:.0f} us/msg"
    )
    if "wire_bytes_out" in r:
        print(
            f"  link socket bytes   to cloud {r['wire_bytes_out']:,} B, from cloud"
            f" {r['wire_bytes_in']:,} B; site {r['local_wire_bytes_in']:,} B in,"
            f" {r['local_wire_bytes_out']:,} B out (after the burst)"
        )
    if "burst_wire_bytes_per_msg" in r:
        print(f"  WAN bytes per msg   {r['burst_wire_bytes_per_msg']:.1f} B (burst, to cloud)")


def write_results(results: dict[str, Any], name: str = "mesh") -> Path:
    """Write bench/results/{name}.json."""
    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return out
