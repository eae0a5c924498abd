"""``python -m fogmesh.migrator``."""

from fogmesh.migrator.cli import main

main()
