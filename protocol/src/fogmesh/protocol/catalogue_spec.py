"""A row of the topic catalogue (:class:`TopicSpec`) and the rows of a family of requests."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from fogmesh.protocol.envelope import ErrorReply

__all__ = ["TopicSpec", "request_topics"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic pattern of the tree and what travels on it."""

    pattern: str
    model: type[BaseModel] | None
    publisher: str
    subscribers: str
    qos: int
    retained: bool
    summary: str
    reply: tuple[type[BaseModel], ...] = ()
    payload: str = ""  # what travels when there is no single model


def request_topics(
    prefix: str,
    publisher: str,
    subscribers: str,
    rows: tuple[tuple[str, type[BaseModel], type[BaseModel], str], ...],
) -> tuple[TopicSpec, ...]:
    """A request topic ``prefix + action`` for each ``(action, request, answer, summary)``:
    QoS 1, not retained, answered with ``answer`` or :class:`ErrorReply`."""
    return tuple(
        TopicSpec(
            prefix + action,
            request,
            publisher,
            subscribers,
            1,
            False,
            summary,
            (answer, ErrorReply),
        )
        for action, request, answer, summary in rows
    )
