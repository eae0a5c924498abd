"""What a site did while cut off, folded into the scheduler's record on healing.

While every link of a site is down, that site's own migrator (site mode) is the only writer of
its nodes' desired state: it moves a lost node's workloads to a peer of the site, writing in a
site term (:func:`fogmesh.protocol.partition.site_generation`) with ``site_writer`` set. Those
retained desired states cross the link when it heals. The scheduler leader then *adopts* each
one whose generation lies in a site term newer than its own record of the node: every workload
it holds that the store places elsewhere is moved there in the store (a move on record, trigger
``node-lost``, and a ``workload-replaced`` event), unless its manifest pins it to another node,
and the node's desired state is written again from the store, in the cloud's term, which is
newer. So no workload is placed twice (the store has one placement per workload), none is lost
(the store keeps a workload the site could not move where it was), and what the cloud changed
while the site was away (an app deleted, updated or scaled) wins over the site's copy of it.
See docs/migrator.md, "During a partition".
"""

from __future__ import annotations

import time

import structlog

from fogmesh.protocol.events import Event, EventKind, ReplacedData
from fogmesh.protocol.migration import MigrationTrigger
from fogmesh.protocol.partition import is_site_term
from fogmesh.protocol.workload import DesiredState
from fogmesh.scheduler.changes import Changes
from fogmesh.scheduler.store import MAX_MOVES, AppRecord, MoveRecord, PlacementRecord, Store

__all__ = ["adopt_site_write", "pin_of", "pinned_on"]

log = structlog.get_logger("fogmesh.scheduler.sites")


def pin_of(app: AppRecord, placement: PlacementRecord) -> str | None:
    """The node the manifest pins ``placement``'s component to (None: not pinned)."""
    comp = next((c for c in app.manifest.components if c.name == placement.spec.component), None)
    pin = comp.placement.node if comp is not None else None
    return pin or app.manifest.placement.node


def pinned_on(store: Store, node: str) -> list[str]:
    """The workloads placed on ``node`` that their manifest pins there (``DesiredState.pinned``:
    a site's own migrator never moves them)."""
    return sorted(
        p.name
        for app, p in store.placements()
        if p.node == node and not p.retiring and pin_of(app, p) == node
    )


def _placed(store: Store, tenant: str, name: str) -> tuple[AppRecord, PlacementRecord] | None:
    for app, p in store.placements():
        if app.tenant == tenant and p.name == name and not p.retiring:
            return app, p
    return None


def adopt_site_write(store: Store, state: DesiredState, changes: Changes) -> int:
    """Fold ``state``, written by a cut-off site, into the store; returns the moves adopted.

    Nothing happens unless ``state`` is a site's write in a term newer than the store's record
    of the node. The node is marked dirty either way it is adopted: its next desired state,
    from the store, ends the site's term."""
    own = store.doc.generations.get(state.node, 0)
    if state.site_writer is None or not is_site_term(state.generation, own):
        return 0
    changes.dirty.add(state.node)
    moved = 0
    for spec in state.workloads:
        found = _placed(store, spec.tenant, spec.name)
        if found is None:
            continue  # deleted while the site was away: the rewrite removes the site's copy
        app, placement = found
        pin = pin_of(app, placement)
        if placement.node == state.node or (pin is not None and pin != state.node):
            continue
        source, placement.node = placement.node, state.node
        if source is not None:
            changes.dirty.add(source)
        changes.apps.add(Store.key(app.tenant, app.manifest.name))
        moves = store.doc.moves
        moves.append(MoveRecord(
            ts=time.time(), tenant=app.tenant, workload=placement.name, from_node=source,
            to_node=state.node, trigger=MigrationTrigger.NODE_LOST.value,
        ))  # fmt: skip
        del moves[:-MAX_MOVES]
        changes.events.append((app.tenant, Event.of(
            EventKind.REPLACED, ReplacedData(from_=source, to=state.node), tenant=app.tenant,
            app=app.manifest.name, workload=placement.name, node=state.node,
            message=f"moved to {state.node} by site {state.site_writer} while cut off",
        )))  # fmt: skip
        moved += 1
        log.info("adopted a site's move", site=state.site_writer, workload=placement.name,
                 tenant=app.tenant, from_node=source, to=state.node)  # fmt: skip
    return moved
