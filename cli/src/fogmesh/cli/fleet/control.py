"""The control socket of a running ``fogmesh up``: ``{state dir}/control.sock``.

``fogmesh fleet kill NODE [--silent]`` and ``fogmesh fleet revive NODE`` send one JSON line
(a :class:`ControlRequest`) and read one JSON line back (a :class:`ControlReply`). The socket
lives in the fleet's state directory (mode 0700, the directory that holds every password), so
only the user who started the fleet can reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fogmesh.cli.errors import CliError
from fogmesh.protocol import error_info_from_validation

__all__ = [
    "CONTROL_SOCKET",
    "ControlAction",
    "ControlReply",
    "ControlRequest",
    "ControlServer",
    "send_control",
]

CONTROL_SOCKET = "control.sock"
_MAX_LINE = 4096
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path, less its terminating NUL
log = structlog.get_logger("fogmesh.cli.fleet")


class ControlAction(StrEnum):
    """What the control socket does."""

    KILL = "kill"
    REVIVE = "revive"


class ControlRequest(BaseModel):
    """One command to the running fleet."""

    model_config = ConfigDict(extra="forbid")

    action: ControlAction
    node: str = Field(min_length=1, max_length=128)
    silent: bool = Field(default=False, description="kill: SIGSTOP the agent instead")


class ControlReply(BaseModel):
    """The answer: what was done, or why not (``code`` is the CLI's exit code)."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    message: str
    code: int = 0


Handler = Callable[[ControlRequest], Awaitable[str]]


class ControlServer:
    """Serves the control socket until closed; ``handler`` does the work and returns what
    it did, or raises :class:`CliError` with why not."""

    def __init__(self, state_dir: Path, handler: Handler) -> None:
        self.path = state_dir / CONTROL_SOCKET
        self.handler = handler
        self._server: asyncio.Server | None = None

    async def start(self) -> bool:
        """Listen; False (and nothing listens) when the path is too long for a socket."""
        if len(str(self.path).encode()) > _SUN_PATH_MAX:
            return False
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=_MAX_LINE)
        self.path.chmod(0o600)
        return True

    async def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self._answer(reader)
            writer.write(reply.model_dump_json().encode() + b"\n")
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.drain(), 5)
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5)

    async def _answer(self, reader: asyncio.StreamReader) -> ControlReply:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            request = ControlRequest.model_validate_json(line)
        except (TimeoutError, ValueError, OSError) as exc:
            if isinstance(exc, ValidationError):
                why = error_info_from_validation(exc).message
            else:
                why = "no request line" if isinstance(exc, TimeoutError) else str(exc)
            log.warning("bad control request", error=why)
            return ControlReply(ok=False, message=f"bad control request: {why}", code=2)
        try:
            return ControlReply(ok=True, message=await self.handler(request))
        except CliError as exc:
            return ControlReply(ok=False, message=exc.message, code=exc.code)


def send_control(state_dir: Path, request: ControlRequest, timeout: float = 60.0) -> str:
    """Send ``request`` to the fleet running with ``state_dir``; what it did, or
    :class:`CliError` (no fleet there, or the fleet's refusal)."""
    path = state_dir / CONTROL_SOCKET
    if not path.exists():
        raise CliError(
            f"no running `fogmesh up` has its state in {state_dir} (no {CONTROL_SOCKET})",
            code=3,
        )
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(request.model_dump_json().encode() + b"\n")
            data = sock.makefile("rb").readline(_MAX_LINE * 4)
    except OSError as exc:  # refused (a fleet that died), timed out, too long a path
        raise CliError(f"the fleet in {state_dir} does not answer: {exc}", code=3) from exc
    try:
        reply = ControlReply.model_validate(json.loads(data))
    except ValueError as exc:
        raise CliError(f"the fleet in {state_dir} sent a bad reply: {data[:200]!r}") from exc
    if not reply.ok:
        raise CliError(reply.message, code=reply.code or 1)
    return reply.message
