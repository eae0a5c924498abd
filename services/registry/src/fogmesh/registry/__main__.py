"""``python -m fogmesh.registry``."""

from fogmesh.registry.cli import main

main()
