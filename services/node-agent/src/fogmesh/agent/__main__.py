"""``python -m fogmesh.agent``: the same as ``fogmesh-agent``."""

from fogmesh.agent.cli import main

main()
