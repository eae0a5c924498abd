"""The one error the CLI shows its user: a line of text and an exit code, never a traceback."""

from __future__ import annotations

from fogmesh.protocol.errors import FogmeshError

__all__ = ["CliError"]


class CliError(FogmeshError):
    """Something the user must fix or know; printed as one line, exit code ``code``."""

    def __init__(self, message: str, *, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
