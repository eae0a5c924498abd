"""A small Docker Engine API client: HTTP/1.1 over the engine's unix socket (or a plain TCP
port) with asyncio streams, nothing else.

It replaces aiodocker in the node agent: aiohttp and aiodocker cost 8.6 MB resident of the
agent's 40 MB budget (docs/agent.md, Memory), and the agent needs only the calls of
:class:`Engine`. Bodies are streamed: pull and load progress lines, container archives
(spooled), the multiplexed log stream, and uploads of a tar or an image file in pieces.
Every refusal is one :class:`EngineError` with the status and the engine's message
(:class:`EngineUnreachable` when there was no answer at all); every call has a timeout.
"""

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
