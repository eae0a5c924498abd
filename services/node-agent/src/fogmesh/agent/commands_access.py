"""Which workload a command may touch (see :mod:`fogmesh.agent.commands`, "Authorisation"):
the handler's state and its tenant checks, shared by the verb families
(:mod:`fogmesh.agent.commands_workload`, :mod:`fogmesh.agent.commands_migration`), and the
runtime's failures turned into refusals (``not_found``, ``invalid_request``, ``unavailable``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

from fogmesh.agent.log_follow import LogFollows
from fogmesh.agent.reconcile import Reconciler
from fogmesh.agent.runtime.base import Runtime, workload_key
from fogmesh.agent.runtime.errors import InstanceNotFound, RuntimeFailure, UnsafePath
from fogmesh.agent.tracked import Tracked
from fogmesh.bus import Refusal
from fogmesh.protocol import ErrorCode, NodeFacts, Request, Usage, WorkloadPhase

__all__ = ["CommandAccess", "P", "key_of", "refusals", "tenant_of"]

log = structlog.get_logger("fogmesh.agent.commands")

P = WorkloadPhase


class CommandAccess:
    """The state the verbs share (set by :class:`fogmesh.agent.commands.CommandHandler`) and
    the checks that find the workload a command may act on."""

    node: str
    reconciler: Reconciler
    _facts: Callable[[], NodeFacts]
    _usage: Callable[[], Usage]
    allow_operator: bool
    stop_timeout: float
    follows: LogFollows

    # -- authorisation ------------------------------------------------------------------------

    def _check_tenant(self, command: Request) -> None:
        if command.tenant is None and not self.allow_operator:
            raise Refusal(
                ErrorCode.UNAUTHORISED,
                "a command must name its tenant (operator commands are disabled on this node)",
            )

    def _workload(self, command: Request, name: str) -> tuple[Tracked, Runtime]:
        self._check_tenant(command)
        tracked = self._find(command.tenant, name)
        if tracked is None or tracked.machine.phase is P.REMOVED:
            raise Refusal(ErrorCode.NOT_FOUND, f"no workload {name!r} on node {self.node!r}")
        if command.tenant is not None and command.tenant != tracked.spec.tenant:
            log.warning(
                "command refused: tenant does not own the workload",
                tenant=command.tenant,
                workload=name,
            )
            raise Refusal(
                ErrorCode.UNAUTHORISED,
                f"tenant {command.tenant!r} does not own workload {name!r}",
            )
        runtime = self.reconciler.runtimes.get(tracked.spec.runtime)
        if runtime is None:
            raise Refusal(
                ErrorCode.UNAVAILABLE, f"runtime {tracked.spec.runtime.value} is not available"
            )
        return tracked, runtime

    def _find(self, tenant: str | None, name: str) -> Tracked | None:
        """A tenant's workload by its (tenant, name) key; for the operator (no tenant), the one
        workload of that name (two tenants' equal names: the operator must name the tenant)."""
        found = [t for t in self.reconciler.tracked.values() if t.spec.name == name]
        if tenant is not None:
            own = self.reconciler.tracked.get(workload_key(tenant, name))
            # another tenant's workload of that name is refused (unauthorised) by the caller
            return own if own is not None else (found[0] if found else None)
        if len(found) > 1:
            raise Refusal(
                ErrorCode.CONFLICT, f"several tenants have a workload {name!r}; name the tenant"
            )
        return found[0] if found else None


def tenant_of(command: Request) -> str:
    """The tenant a state command names (it must name one: the snapshot is that tenant's)."""
    if command.tenant is None:
        raise Refusal(ErrorCode.INVALID_REQUEST, "a state command must name its workload's tenant")
    return command.tenant


def key_of(tracked: Tracked) -> str:
    """The workload's (tenant, name) key."""
    return workload_key(tracked.spec.tenant, tracked.spec.name)


@contextmanager
def refusals(workload: str) -> Iterator[None]:
    """Turn runtime failures inside the block into error replies."""
    try:
        yield
    except InstanceNotFound as exc:
        raise Refusal(ErrorCode.NOT_FOUND, f"{workload}: {exc}") from exc
    except UnsafePath as exc:
        raise Refusal(ErrorCode.INVALID_REQUEST, f"{workload}: {exc}") from exc
    except RuntimeFailure as exc:
        raise Refusal(ErrorCode.UNAVAILABLE, f"{workload}: {exc}") from exc
