"""fogmesh's broker mesh: the embedded amqtt broker and the bridge links between brokers.

Run a site with ``fogmesh-broker run --mesh FILE --broker NAME``; see ``docs/mesh.md``.
"""

from fogmesh.broker.config import MeshConfigError, MeshSpec, load_mesh
from fogmesh.broker.link import Link
from fogmesh.broker.mosquitto import render_mosquitto
from fogmesh.broker.passwords import hash_password, verify_password
from fogmesh.broker.runner import run_site
from fogmesh.broker.server import MeshBroker

__all__ = [
    "Link",
    "MeshBroker",
    "MeshConfigError",
    "MeshSpec",
    "hash_password",
    "load_mesh",
    "render_mosquitto",
    "run_site",
    "verify_password",
]
