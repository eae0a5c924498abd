"""A small Docker Engine API client: HTTP/1.1 over the engine's unix socket (or a plain TCP
port) with asyncio streams, nothing else.

It replaces aiodocker in the node agent: aiohttp and aiodocker cost 8.6 MB resident of the
agent's 40 MB budget (docs/agent.md, Memory), and the agent needs only the calls of
:class:`Engine`. Bodies are streamed: pull and load progress lines, container archives
(spooled), the multiplexed log stream, and uploads of a tar or an image file in pieces.
Every refusal is one :class:`EngineError` with the status and the engine's message
(:class:`EngineUnreachable` when there was no answer at all); every call has a timeout.

The names below are imported on first use (module ``__getattr__``): the runtimes' error
translation needs only the errors, so an agent without the Docker runtime never loads the
client (docs/agent.md, "Memory").
"""

from typing import TYPE_CHECKING

from fogmesh.protocol._lazy import homes, lazy_exports

if TYPE_CHECKING:
    from fogmesh.agent.runtime.engine._address import DEFAULT_SOCKET, Address, engine_address
    from fogmesh.agent.runtime.engine._client import Engine, Filters, is_regular_file
    from fogmesh.agent.runtime.engine._errors import NO_ANSWER, EngineError, EngineUnreachable
    from fogmesh.agent.runtime.engine._frames import STREAM_FAILED, demux, json_lines

__all__ = [
    "DEFAULT_SOCKET",
    "NO_ANSWER",
    "STREAM_FAILED",
    "Address",
    "Engine",
    "EngineError",
    "EngineUnreachable",
    "Filters",
    "demux",
    "engine_address",
    "is_regular_file",
    "json_lines",
]

_HOMES = homes(
    {
        "_address": "DEFAULT_SOCKET Address engine_address",
        "_client": "Engine Filters is_regular_file",
        "_errors": "NO_ANSWER EngineError EngineUnreachable",
        "_frames": "STREAM_FAILED demux json_lines",
    }
)

if not TYPE_CHECKING:  # a type checker sees the imports above instead
    __getattr__ = lazy_exports(__name__, globals(), _HOMES)
