"""Distances on the Earth and the latency estimate the cost function uses."""

from __future__ import annotations

import math

__all__ = ["BASE_RTT_MS", "KM_PER_MS_RTT", "estimated_rtt_ms", "haversine_km"]

EARTH_RADIUS_KM = 6371.0088
BASE_RTT_MS = 1.0
"""Round trip to a node at distance zero (one LAN hop)."""
KM_PER_MS_RTT = 100.0
"""Light in fibre covers ~200 km per ms one way, so ~100 km of distance per ms of round trip."""


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two WGS84 points (degrees)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def estimated_rtt_ms(distance_km: float) -> float:
    """The latency estimate of the paper's cost, from distance alone (no measurements yet)."""
    return BASE_RTT_MS + distance_km / KM_PER_MS_RTT
