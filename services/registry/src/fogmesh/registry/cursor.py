"""Opaque pagination cursors: the sort key of the last item of a page, base64url JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fogmesh.protocol.errors import FogmeshError

__all__ = ["BadCursor", "decode_cursor", "encode_cursor"]


class BadCursor(FogmeshError, ValueError):
    """A cursor that this registry did not make (or made for another query)."""


def encode_cursor(kind: str, key: list[Any]) -> str:
    """A cursor for the page after the item whose sort key is ``key``."""
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, types: tuple[type, ...]) -> list[Any]:
    """The sort key inside ``cursor``; :class:`BadCursor` unless it is a ``kind`` cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise BadCursor("cursor is not one this registry made") from exc
    if not isinstance(data, list) or len(data) != len(types) + 1 or data[0] != kind:
        raise BadCursor(f"cursor is not a {kind} cursor")
    key = data[1:]
    for value, expected in zip(key, types, strict=True):
        if not isinstance(value, expected) or isinstance(value, bool):
            raise BadCursor(f"cursor is not a {kind} cursor")
    return key
