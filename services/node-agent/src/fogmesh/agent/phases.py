"""One workload's phase, moved by legal transitions only (:data:`fogmesh.protocol.TRANSITIONS`).

:meth:`PhaseMachine.move` refuses an illegal move loudly (:class:`IllegalTransition`), so a bug
in the reconciler shows up as an error instead of a status that lies.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fogmesh.protocol import TRANSITIONS, FogmeshError, WorkloadPhase, can_transition

__all__ = ["IllegalTransition", "PhaseMachine", "shortest_path"]

Listener = Callable[[WorkloadPhase, WorkloadPhase, str], None]


class IllegalTransition(FogmeshError, RuntimeError):
    """A move the workload state machine does not allow."""

    def __init__(self, name: str, current: WorkloadPhase, target: WorkloadPhase) -> None:
        super().__init__(f"workload {name!r}: illegal transition {current} -> {target}")
        self.current = current
        self.target = target


class PhaseMachine:
    """The phase of one workload, with the reason of the last move and when it happened."""

    def __init__(
        self,
        name: str,
        phase: WorkloadPhase = WorkloadPhase.DEFINED,
        *,
        listener: Listener | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.phase = phase
        self.reason = ""
        self._clock = clock
        self.since = clock()
        self._listener = listener
        self.history: list[WorkloadPhase] = [phase]

    def can(self, target: WorkloadPhase) -> bool:
        """Whether ``target`` is a legal next phase."""
        return can_transition(self.phase, target)

    def move(self, target: WorkloadPhase, reason: str = "") -> None:
        """Move to ``target``; :class:`IllegalTransition` if the machine forbids it.

        Staying in the same phase is legal and only updates the reason.
        """
        if not can_transition(self.phase, target):
            raise IllegalTransition(self.name, self.phase, target)
        previous = self.phase
        self.reason = reason[:2048]
        if previous is target:
            return
        self.phase = target
        self.since = self._clock()
        self.history.append(target)
        del self.history[:-32]
        if self._listener is not None:
            self._listener(previous, target, self.reason)

    def path(self, *targets: WorkloadPhase, reason: str = "") -> None:
        """Move through ``targets`` in order (each step checked)."""
        for target in targets:
            self.move(target, reason)

    def drive_to(self, target: WorkloadPhase, reason: str = "") -> None:
        """Reach ``target`` by the shortest chain of legal moves (each one recorded)."""
        self.path(*shortest_path(self.phase, target), reason=reason)
        self.reason = reason[:2048]


def shortest_path(current: WorkloadPhase, target: WorkloadPhase) -> list[WorkloadPhase]:
    """The shortest chain of legal moves from ``current`` to ``target`` (empty when equal);
    :class:`IllegalTransition` if ``target`` cannot be reached at all."""

    if current is target:
        return []
    frontier: list[list[WorkloadPhase]] = [[current]]
    seen = {current}
    while frontier:
        nxt: list[list[WorkloadPhase]] = []
        for chain in frontier:
            for phase in sorted(TRANSITIONS[chain[-1]]):
                if phase in seen:
                    continue
                if phase is target:
                    return [*chain[1:], phase]
                seen.add(phase)
                nxt.append([*chain, phase])
        frontier = nxt
    raise IllegalTransition("?", current, target)
