"""The mesh bench's measurements on one configuration: hop latency against a direct publish,
a QoS 1 burst through the hop (with the site's CPU and the link's socket bytes), and the drain
of what the site queued while the cloud was away."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from mesh_clients import Paho, cpu_s, drain, latency, link_status, pct
from mesh_ends import start_ends

from fogmesh.protocol import LinkStatus
from tests.support.mesh import MeshProcess

__all__ = ["bench_end", "wire_figures"]


def wire_figures(status: LinkStatus | None, before: LinkStatus | None, n: int) -> dict[str, Any]:
    """The link's socket byte counts, and the WAN bytes per message of the burst."""
    if status is None:
        return {}
    out: dict[str, Any] = {
        "wire_bytes_out": status.wire_bytes_out,
        "wire_bytes_in": status.wire_bytes_in,
        "local_wire_bytes_out": status.local_wire_bytes_out,
        "local_wire_bytes_in": status.local_wire_bytes_in,
    }
    if before is not None and n:
        out["burst_wire_bytes_per_msg"] = (status.wire_bytes_out - before.wire_bytes_out) / n
    return out


async def bench_end(
    kind: str, tmp: Path, partition: float, n_tput: int, args_timeout: float = 120.0
) -> dict[str, Any]:
    """All figures with the configuration ``kind`` (:func:`start_ends`)."""
    ends = start_ends(kind, tmp)
    mosq, cloud_proc, site_proc = ends.mosq, ends.cloud, ends.site
    site_port, site_user = ends.site_port, ends.site_user
    cloud_port, cloud_user = ends.cloud_port, ends.cloud_user
    try:
        direct = latency(cloud_port, cloud_port, 500, cloud_user, cloud_user)
        hop = latency(site_port, cloud_port, 500, site_user, cloud_user)
        res: dict[str, Any] = {
            "direct_p50_ms": pct(direct, 50),
            "direct_p99_ms": pct(direct, 99),
            "hop_p50_ms": pct(hop, 50),
            "hop_p99_ms": pct(hop, 99),
        }
        res["added_p50_ms"] = res["hop_p50_ms"] - res["direct_p50_ms"]
        res["added_p99_ms"] = res["hop_p99_ms"] - res["direct_p99_ms"]
        res["hop_ratio"] = res["hop_p50_ms"] / res["direct_p50_ms"]

        # the site's CPU per message (broker and link, or Mosquitto and its bridge): unlike
        # the rates, hardly moved by what else runs on the machine
        site_procs = [ends.site.proc, ends.site_mosq.proc if ends.site_mosq else None]
        fogmesh_site = isinstance(ends.site, MeshProcess)
        before = await link_status(site_port, site_user) if fogmesh_site else None
        # throughput: publish n QoS 1 messages at the site as fast as it takes them
        with (
            Paho(cloud_port, cloud_user, ident="bench-sub", clean=False) as sub,
            Paho(site_port, site_user) as pub,
        ):
            sub.subscribe("b/#")
            c0 = cpu_s(site_procs)
            t0 = time.perf_counter()
            pub.publish_all("b/t", [f"t-{i}".encode() for i in range(n_tput)], 300)
            got, _ = drain(sub, n_tput, b"t-", 300)
            res["burst_site_cpu_us_per_msg"] = (cpu_s(site_procs) - c0) * 1e6 / n_tput
            res["throughput_msgs"] = got
            res["throughput_msg_s"] = got / (time.perf_counter() - t0)
            res["burst_msgs_per_s"] = res["throughput_msg_s"]
        if fogmesh_site:
            done = (before.forwarded if before is not None else 0) + n_tput
            res.update(wire_figures(await link_status(site_port, site_user, done), before, n_tput))

        # partition: the cloud goes away, the site keeps publishing, the cloud comes back
        if mosq is not None:
            mosq.stop()  # SIGTERM: Mosquitto saves the subscriber's session
        else:
            assert cloud_proc is not None
            cloud_proc.kill()
        count = 0
        t_end = time.monotonic() + partition
        with Paho(site_port, site_user) as pub:
            while time.monotonic() < t_end:
                pub.publish_all("b/p", [f"p-{count + i}".encode() for i in range(100)], 60)
                count += 100
        await asyncio.sleep(1.0)
        if mosq is not None:
            mosq.start()
        else:
            assert cloud_proc is not None
            cloud_proc.start()
        c0 = cpu_s(site_procs)
        with Paho(cloud_port, cloud_user, ident="bench-sub", clean=False) as sub:
            got, seconds = drain(sub, count, b"p-", args_timeout)
        res["drain_site_cpu_us_per_msg"] = (cpu_s(site_procs) - c0) * 1e6 / max(1, count)
        res.update(
            partition_s=partition,
            queued_msgs=count,
            drained_msgs=got,
            drain_s=seconds,
            drain_msg_s=got / seconds if seconds > 0 else 0.0,
        )
        res["drain_msgs_per_s"] = res["drain_msg_s"]
        return res
    finally:
        site_proc.stop()
        if cloud_proc is not None:
            cloud_proc.stop()
        if mosq is not None:
            mosq.stop()
        if ends.site_mosq is not None:
            ends.site_mosq.stop()
