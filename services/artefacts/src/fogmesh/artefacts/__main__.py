"""``python -m fogmesh.artefacts``: the same as ``fogmesh-artefacts``."""

from fogmesh.artefacts.cli import main

main()
