"""Identifiers that become topic levels: node, tenant, app, component, workload, verb.

An identifier is a single MQTT topic level, so it must never contain a level separator or a
wildcard, and it must stay short enough that a whole topic fits well under MQTT's limits.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import AfterValidator

from fogmesh.protocol.errors import ContractError

__all__ = ["MAX_ID_LENGTH", "Ident", "check_id", "check_topic"]

MAX_ID_LENGTH = 128
_FORBIDDEN = frozenset("+#/\x00")


def check_id(value: str, *, what: str = "id") -> str:
    """Return ``value`` if it is a legal single topic level, else raise :class:`ContractError`."""
    if not isinstance(value, str):
        raise ContractError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise ContractError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ContractError(f"{what} is longer than {MAX_ID_LENGTH} characters")
    for char in value:
        if char in _FORBIDDEN:
            raise ContractError(f"{what} must not contain {char!r}")
        if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F:
            raise ContractError(f"{what} must not contain control characters")
    if value != value.strip():
        raise ContractError(f"{what} must not start or end with whitespace")
    return value


@lru_cache(maxsize=4096)  # the same topics are checked over and over on hot paths
def check_topic(value: str) -> str:
    """Return ``value`` if it is a concrete topic name (no wildcards, no empty levels)."""
    if not value:
        raise ContractError("topic must not be empty")
    if len(value.encode()) > 1024:
        raise ContractError("topic is longer than 1024 bytes")
    for level in value.split("/"):
        check_id(level, what="topic level")
    return value


def _validated_id(value: str) -> str:
    try:
        return check_id(value)
    except ContractError as exc:
        # pydantic turns ValueError into a field error that names the field.
        raise ValueError(str(exc)) from exc


Ident = Annotated[str, AfterValidator(_validated_id)]
"""A string that is a legal topic level; use it for every id in a model."""
