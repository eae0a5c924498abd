"""Great-circle distance (haversine) and a bounding box that contains a circle."""

from __future__ import annotations

import math

__all__ = ["EARTH_RADIUS_KM", "bounding_box", "haversine_km"]

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Distance in km between two WGS84 points on a spherical Earth."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(lat: float, lon: float, km: float) -> tuple[float, float, float, float] | None:
    """``(lat_min, lat_max, lon_min, lon_max)`` holding every point within ``km``.

    None when the circle reaches a pole or wraps the antimeridian (then filter exactly only).
    """
    dlat = math.degrees(km / EARTH_RADIUS_KM)
    lat_min, lat_max = lat - dlat, lat + dlat
    if lat_min <= -90 or lat_max >= 90:
        return None
    dlon = math.degrees(
        km / (EARTH_RADIUS_KM * math.cos(math.radians(max(abs(lat_min), abs(lat_max)))))
    )
    if lon - dlon < -180 or lon + dlon > 180:
        return None
    return lat_min, lat_max, lon - dlon, lon + dlon
