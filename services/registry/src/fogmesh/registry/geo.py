"""A bounding box that contains a circle, beside the one haversine (from the protocol)."""

from __future__ import annotations

import math

from fogmesh.protocol.geo import EARTH_RADIUS_KM, haversine_km

__all__ = ["EARTH_RADIUS_KM", "bounding_box", "haversine_km"]


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
