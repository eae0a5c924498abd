"""The mesh and the services' records: bridge links and sessions, audit records, leases, the
scheduler's store, runtime accounts and tenants, and join tokens.

Rows of :data:`fogmesh.protocol.catalogue.CATALOGUE`, in its order."""

from __future__ import annotations

from fogmesh.protocol import accounts, appstore, audit, lease, mesh
from fogmesh.protocol.catalogue_spec import TopicSpec
from fogmesh.protocol.envelope import ErrorReply

__all__ = ["MESH"]

MESH: tuple[TopicSpec, ...] = (
    TopicSpec(
        "fm/v1/mesh/{broker}/links/{link}",
        mesh.LinkStatus,
        "bridge link",
        "operators",
        1,
        True,
        "A bridge link's state and queue depth.",
    ),
    TopicSpec(
        "fm/v1/mesh/sessions/claim",
        mesh.SessionClaim,
        "embedded broker (a persistent session subscribed there)",
        "the other embedded brokers (over links)",
        1,
        False,
        "A client's persistent session is at this broker now: one holding its disconnected"
        " session hands on what it queued for the claimed filters (docs/reliability.md).",
    ),
    TopicSpec(
        "fm/v1/mesh/sessions/handoff/{broker}",
        mesh.HandedOnMessage,
        "embedded broker that held the old session",
        "the claiming broker",
        1,
        False,
        "One queued or in-flight message of a claimed session, in order.",
    ),
    TopicSpec(
        "fm/v1/audit/{account}",
        audit.AuditRecord,
        "every service's request router",
        "operators",
        1,
        False,
        "Who asked what of the service with `account` and the outcome (ok or the error code).",
    ),
    TopicSpec(
        "fm/v1/leases/{duty}",
        lease.LeaseRecord,
        "holder of the duty",
        "its standbys",
        1,
        True,
        "Who holds a single-writer duty (the scheduler's, the migrator's) until when.",
    ),
    TopicSpec(
        "fm/v1/store/scheduler/{tenant}/{app}",
        appstore.StoredApp,
        "the leading scheduler",
        "every scheduler instance",
        1,
        True,
        "An app with its placements as the scheduler last wrote it, or its tombstone (`app`"
        " null); the newest `(term, seq)` wins, so a standby takes over with every app.",
    ),
    TopicSpec(
        "fm/v1/accounts/{username}",
        accounts.AccountRecord,
        "operators (`fogmesh account`, `tenant`, `node`), the broker redeeming a join token",
        "brokers",
        1,
        True,
        "A broker account made at runtime, or its tombstone (`revoked`); it overrides the mesh"
        " file's account of that name on every broker the record reaches.",
    ),
    TopicSpec(
        "fm/v1/tenants/{tenant}",
        accounts.TenantRecord,
        "operators (`fogmesh tenant`)",
        "brokers",
        1,
        True,
        "A tenant made or deleted at runtime; a deleted tenant's accounts are refused.",
    ),
    TopicSpec(
        "fm/v1/join/{bootstrap}",
        accounts.JoinRequest,
        "an agent holding a join token (account `join-{id}`)",
        "the broker it is connected to",
        1,
        False,
        "Redeem a single-use join token for the node's own credential.",
        reply=(accounts.JoinReply, ErrorReply),
    ),
)
