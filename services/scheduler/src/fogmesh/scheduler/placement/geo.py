"""The latency estimate the cost function uses, from distance (the protocol's haversine)."""

from __future__ import annotations

from fogmesh.protocol.geo import haversine_km

__all__ = ["BASE_RTT_MS", "KM_PER_MS_RTT", "estimated_rtt_ms", "haversine_km"]

BASE_RTT_MS = 1.0
"""Round trip to a node at distance zero (one LAN hop)."""
KM_PER_MS_RTT = 100.0
"""Light in fibre covers ~200 km per ms one way, so ~100 km of distance per ms of round trip."""


def estimated_rtt_ms(distance_km: float) -> float:
    """The latency estimate of the paper's cost, from distance alone (no measurements yet)."""
    return BASE_RTT_MS + distance_km / KM_PER_MS_RTT
