"""The registry's storage: schema, migrations, the batch writer and the readers."""

from fogmesh.registry.db.engine import make_engine
from fogmesh.registry.db.migrate import migrate
from fogmesh.registry.db.writes import BatchWriter

__all__ = ["BatchWriter", "make_engine", "migrate"]
