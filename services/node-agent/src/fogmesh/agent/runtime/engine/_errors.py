"""The engine client's errors: one class for every answer the engine refused."""

from __future__ import annotations

from fogmesh.protocol.errors import FogmeshError

__all__ = ["NO_ANSWER", "EngineError", "EngineUnreachable"]

NO_ANSWER = 0
"""The status of an error that came with no HTTP answer (connection, framing)."""


class EngineError(FogmeshError):
    """The engine answered ``status`` (>= 400) with ``message`` (its JSON ``message``), or an
    in-band error of a progress stream (``status`` 500), or a malformed answer (``status``
    :data:`NO_ANSWER`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"[{status}] {message}")
        self.status = status
        self.message = message


class EngineUnreachable(EngineError):
    """The engine could not be reached, or dropped the connection before it answered."""

    def __init__(self, message: str) -> None:
        super().__init__(NO_ANSWER, message)
