"""fogmesh's artefact store and site caches (``docs/artefacts.md``)."""

from fogmesh.artefacts.blobs import BlobStore
from fogmesh.artefacts.cache import CacheService
from fogmesh.artefacts.config import CacheConfig, StoreConfig
from fogmesh.artefacts.store import StoreService

__all__ = ["BlobStore", "CacheConfig", "CacheService", "StoreConfig", "StoreService"]
