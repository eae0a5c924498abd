"""``python -m fogmesh.broker``: same as the ``fogmesh-broker`` command."""

import sys

from fogmesh.broker.cli import main

sys.exit(main())
