"""``python -m fogmesh.dashboard``."""

from fogmesh.dashboard.cli import main

main()
