"""fogmesh's web dashboard: a static page that is itself an MQTT client over WebSocket.

The process serves the page and its files, and on ``/mqtt`` pipes each WebSocket (subprotocol
``mqtt``) byte for byte to the broker's TCP listener: one origin for the browser, and no REST
backend; the broker's own accounts and ACLs decide what a login may see (``docs/dashboard.md``).
"""

from fogmesh.dashboard.server import (
    MQTT_PATH,
    STATIC_DIR,
    DashboardServer,
    DashboardSettings,
    missing_assets,
)

__all__ = [
    "MQTT_PATH",
    "STATIC_DIR",
    "DashboardServer",
    "DashboardSettings",
    "missing_assets",
]
