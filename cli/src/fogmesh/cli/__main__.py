"""``python -m fogmesh.cli``."""

from fogmesh.cli.main import main

main()
