"""``python -m fogmesh.scheduler``."""

from fogmesh.scheduler.cli import main

main()
