"""Every event kind has a payload model, and what each publisher puts in ``Event.data`` is
that model: the registry's liveness events (built from plain dicts) are checked here."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fogmesh.protocol import (
    EVENT_DATA,
    AppEventData,
    Event,
    EventKind,
    NodeEventData,
    ReplacedData,
)
from fogmesh.registry.ingest import transition_event
from fogmesh.registry.liveness import LivenessTracker, Transition


def test_every_kind_has_a_payload_model() -> None:
    assert set(EVENT_DATA) == set(EventKind)


def test_of_refuses_another_kinds_payload_and_round_trips_its_own() -> None:
    with pytest.raises(TypeError, match="AppEventData"):
        Event.of(EventKind.APP_DEPLOYED, ReplacedData(to="n2"))
    event = Event.of(EventKind.REPLACED, ReplacedData(from_="n1", to="n2"))
    assert event.data == {"from": "n1", "to": "n2"}  # the wire form keeps its keys
    assert Event.model_validate_json(event.model_dump_json()).payload() == ReplacedData(
        from_="n1", to="n2"
    )
    with pytest.raises(TypeError):
        event.payload_as(AppEventData)


def test_an_app_event_takes_its_version_from_the_manifest() -> None:
    data = AppEventData.model_validate({"manifest": {"name": "shop", "version": "7"}})
    assert data.version == "7"
    with pytest.raises(ValidationError):
        AppEventData.model_validate({"version": "1", "typo": True})


def _liveness_transitions() -> list[Transition]:
    t = LivenessTracker(missed=3, default_interval=10)
    out = t.alive("n", 0.0, retained=False, via="hello", interval=1.0, boot_id="b1")
    out += t.tick(1.6) + t.tick(3.1)  # stale, then lost (missed heartbeats)
    out += t.alive("n", 3.2, retained=False, via="state", boot_id="b2")  # back, rebooted
    out += t.last_will("n", 3.3, boot_id="b2")
    return out


def test_the_registrys_liveness_events_are_node_event_data() -> None:
    events = [e for tr in _liveness_transitions() if (e := transition_event(tr, "reg"))]
    kinds = [e.kind for e in events]
    assert kinds == [EventKind.NODE_JOINED, EventKind.NODE_STALE, EventKind.NODE_LOST,
                     EventKind.NODE_BACK, EventKind.NODE_LOST]  # fmt: skip
    payloads = [e.payload_as(NodeEventData) for e in events]
    assert payloads[2].reason == "missed-heartbeats"
    assert payloads[3].rebooted is True
