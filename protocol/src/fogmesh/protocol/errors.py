"""fogmesh's errors, on the wire and in Python.

The exception tree: every exception fogmesh raises derives from :class:`FogmeshError` (a test
walks every ``fogmesh.*`` module to hold this)::

    FogmeshError
     ├── ContractError          a value breaks the contract (bad id, bad topic); a ValueError
     ├── BusError               the bus could not do what was asked
     │    ├── NotConnectedError publish with no connection and a full outbox (policy ``reject``)
     │    └── RequestTimeout    no reply within the deadline; a TimeoutError
     ├── RemoteError            a service answered a request with an error reply (``.code``)
     ├── Refusal                (fogmesh.bus) a handler refuses a request: its error reply
     ├── RuntimeFailure         (fogmesh.agent.runtime.errors) a runtime could not do it
     │    ├── RuntimeUnavailable, InstanceNotFound, InstanceExists, PrepareFailed, UnsafePath
     ├── IllegalTransition      (fogmesh.agent.phases) a workload phase change the table forbids
     ├── BadCursor              (fogmesh.registry.cursor) a page cursor the registry did not make
     ├── SchemaTooNew           (fogmesh.registry.db.migrate) the database is a newer version
     ├── MeshConfigError        (fogmesh.broker.config) the mesh file is missing or invalid
     ├── PreferredBack, PathSpent (fogmesh.broker.paths) a link leaves its path (signals)
     └── CliError               (fogmesh.cli.errors) one line for the CLI's user, and an exit code

:class:`ErrorCode` and :class:`ErrorInfo` are the wire form: every error reply carries one
machine-readable code, a human message and, for validation errors, the failing fields.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from fogmesh.protocol._model import Model

__all__ = [
    "BusError",
    "ContractError",
    "ErrorCode",
    "ErrorInfo",
    "FieldError",
    "FogmeshError",
    "NotConnectedError",
    "RemoteError",
    "RequestTimeout",
]


class ErrorCode(StrEnum):
    """Machine-readable reasons a request failed."""

    INVALID_PAYLOAD = "invalid_payload"  # not JSON, or JSON that fails the model
    INVALID_REQUEST = "invalid_request"  # well-formed, but asks for something impossible
    UNAUTHORISED = "unauthorised"  # the sender may not do this (other tenant, no credential)
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # e.g. an app of that name already exists
    UNSCHEDULABLE = "unschedulable"  # no node satisfies the constraints
    QUOTA_EXCEEDED = "quota_exceeded"
    UNSUPPORTED = "unsupported"  # e.g. a runtime this node lacks
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"  # the service cannot do it now; retry later
    INTERNAL = "internal"  # a bug: the handler raised


class FieldError(Model):
    """One failing field of a validation error."""

    model_config = ConfigDict(frozen=True)

    loc: str = Field(description="dotted path of the field, e.g. 'components.0.image'")
    msg: str


class ErrorInfo(Model):
    """The error part of a reply."""

    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    message: str
    fields: list[FieldError] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class FogmeshError(Exception):
    """Base of every exception fogmesh raises on purpose."""


class ContractError(FogmeshError, ValueError):
    """A value breaks the message contract (an illegal id or topic)."""


class BusError(FogmeshError):
    """The bus could not do what was asked."""


class NotConnectedError(BusError):
    """Not connected and the outbox refuses more messages."""

    def __init__(self, message: str, *, topic: str) -> None:
        super().__init__(message)
        self.topic = topic


class RequestTimeout(BusError, TimeoutError):
    """No reply arrived within the deadline."""

    def __init__(self, message: str, *, topic: str, correlation_id: str, timeout: float) -> None:
        super().__init__(message)
        self.topic = topic
        self.correlation_id = correlation_id
        self.timeout = timeout


class RemoteError(FogmeshError):
    """A service answered a request with an error reply."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error
        self.code = error.code
