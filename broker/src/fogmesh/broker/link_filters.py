"""The filters a link's kept sessions are subscribed to, on disk beside its queues.

Each side's preferred client keeps its MQTT session on its broker (stable client id,
persistent), so a subscription made under rules the link no longer has would stay there and
keep that traffic coming, to be dropped on arrival. The link writes what it subscribes in
``links/{link}/filters.json``; on a connect that finds its session kept it unsubscribes what
was recorded and no rule names any more, then records the new set.

The record is written before subscribing (the union of the old set and the new one) and again
once the broker has the new set, so a crash in between leaves a record that still names every
filter the session may hold.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

__all__ = ["SessionFilters"]

log = logging.getLogger("fogmesh.broker.link")


class SessionFilters:
    """Per side, the filters its kept session was subscribed to (``filters.json``)."""

    def __init__(self, path: Path) -> None:
        """Read what an earlier run recorded (nothing readable: nothing recorded)."""
        self.path = path
        self._sides: dict[str, list[str]] = {}
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            data = json.loads(path.read_text(encoding="utf-8"))
            self._sides = {
                str(side): sorted({str(f) for f in filters}) for side, filters in data.items()
            }

    def recorded(self, side: str) -> set[str]:
        """The filters ``side``'s kept session may hold."""
        return set(self._sides.get(side, []))

    def record(self, side: str, filters: set[str]) -> None:
        """Write ``filters`` as ``side``'s set (atomically: a crash leaves the old file)."""
        wanted = sorted(filters)
        if self._sides.get(side) == wanted and self.path.exists():
            return
        self._sides[side] = wanted
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self._sides, sort_keys=True), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:
            # best effort: without the record a later narrowing leaves a stale filter, as before
            log.warning("cannot record the link's subscriptions in %s: %s", self.path, exc)
