"""The base of every model in the contract.

Every validator is built on the model's first use, not at import (``defer_build=True``,
inherited by every subclass, merged with the subclass's own ``model_config``): a process imports
the whole contract but validates a handful of its models (docs/agent.md, "Memory").
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Model"]


class Model(BaseModel):
    """A pydantic model whose validator and serializer are built when first used."""

    model_config = ConfigDict(defer_build=True)
