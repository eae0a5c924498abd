"""Roles and topic ACLs: who may publish and subscribe where.

A role lists patterns with placeholders filled from the client's identity. A placeholder whose
value is not a plain id (say a username holding ``+``) makes its pattern match nothing, so a
crafted name can never widen a grant.

Replies live under ``fm/v1/reply/{account}/{client}``, ``{account}`` being a username or a
tenant id: every account reads the replies addressed to its own account, and only services and
nodes (which answer commands) may publish there, so no tenant can forge a reply.
"""

from __future__ import annotations

from dataclasses import dataclass

from fogmesh.broker.config import RoleSpec, UserSpec
from fogmesh.broker.shared import unshared
from fogmesh.broker.topicmatch import filter_within, matches
from fogmesh.protocol import ContractError, EventKind, check_id
from fogmesh.protocol.accounts import JOIN_ROLE
from fogmesh.protocol.artefacts import FETCH_VERB
from fogmesh.protocol.commands import NodeVerb
from fogmesh.protocol.topics import ROOT, NodeChannel

__all__ = ["DEFAULT_ROLES", "EVERYONE", "MAX_REMEMBERED", "Identity", "RoleTable"]

_NODE = f"{ROOT}/nodes/{{node}}"

# What a node agent publishes: its own channels (never desired: that is the scheduler's), the
# events it owns, and the answers to the commands it receives. Nothing more, so a node cannot
# forge liveness, app or another node's events.
_NODE_PUBLISH = [
    *(f"{_NODE}/{ch.value}" for ch in NodeChannel if ch is not NodeChannel.DESIRED),
    f"{ROOT}/events/tenants/+/{EventKind.WORKLOAD_STATE.value}",
    f"{ROOT}/events/tenants/+/{EventKind.REPLACED.value}",
    f"{ROOT}/events/tenants/+/{EventKind.DEVICE_LOST.value}",  # to a lost device's holder
    f"{ROOT}/devices/+/+/{{node}}/+",  # a streamed device's readings, in its own name only
    f"{ROOT}/events/fleet/{EventKind.DESIRED_REJECTED.value}",
    f"{ROOT}/reply/#",
    f"{ROOT}/audit/{{username}}",  # the audit records of the commands it answers
    # a snapshot's chunks, pushed to the peer of a handover (the peer takes only those that
    # carry the token the migrator gave both ends; no node may read another's commands)
    f"{ROOT}/nodes/+/cmd/{NodeVerb.STATE_PUT.value}",
    # a ref its workload runs, asked of its site's artefact cache (docs/artefacts.md)
    f"{ROOT}/ops/+/{FETCH_VERB}",
]

DEFAULT_ROLES: dict[str, RoleSpec] = {
    # registry, scheduler, migrator, operators: the platform itself reads and writes everywhere
    "service": RoleSpec(publish=["#"], subscribe=["#"]),
    # bridge links carry whatever their rules say; the rules are the limit
    "bridge": RoleSpec(publish=["#"], subscribe=["#"]),
    "node": RoleSpec(
        publish=_NODE_PUBLISH,
        subscribe=[f"{_NODE}/#", f"{ROOT}/reply/{{node}}/#"],
    ),
    "tenant": RoleSpec(
        publish=[f"{ROOT}/api/{{tenant}}/#", f"{ROOT}/data/{{tenant}}/#"],
        subscribe=[
            f"{ROOT}/data/{{tenant}}/#",
            f"{ROOT}/events/tenants/{{tenant}}/#",
            f"{ROOT}/reply/{{tenant}}/#",
            f"{ROOT}/devices/{{tenant}}/#",  # streamed devices' readings (nodes publish them)
        ],
    ),
    # a join token's bootstrap account: it may only ask to join (and read its own replies)
    JOIN_ROLE: RoleSpec(publish=[f"{ROOT}/join/{{username}}"]),
}
# Every authenticated account, whatever its role, reads the replies sent to its own account.
# (The old fm/v1/reply/{client} is gone: bound to a client id alone, it was readable by any
# account that took the id, and Mosquitto cannot tie ids to accounts.)
EVERYONE = RoleSpec(subscribe=[f"{ROOT}/reply/{{username}}/#"])


MAX_REMEMBERED = 4096
"""Identities whose expanded publish patterns a :class:`RoleTable` keeps (then it starts over)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a session is: its username, client id and role."""

    username: str
    client_id: str
    role: str
    node: str | None = None
    tenant: str | None = None


class RoleTable:
    """Decides publish and subscribe rights from roles and identities."""

    def __init__(self, extra: dict[str, RoleSpec] | None = None) -> None:
        """Start from :data:`DEFAULT_ROLES`; ``extra`` adds or replaces roles."""
        self.roles = {**DEFAULT_ROLES, **(extra or {})}
        # identity -> its expanded (deny, allow) publish patterns: asked on every publish
        self._publish_grants: dict[Identity, tuple[list[str], list[str]]] = {}

    def identity(self, user: UserSpec, client_id: str) -> Identity:
        """The identity of ``user`` connected as ``client_id``."""
        return Identity(
            username=user.username,
            client_id=client_id,
            role=user.role,
            node=user.node or user.username,
            tenant=user.tenant or user.username,
        )

    def _expand(self, patterns: list[str], who: Identity) -> list[str]:
        values = {
            "username": who.username,
            "client": who.client_id,
            "node": who.node,
            "tenant": who.tenant,
        }
        out: list[str] = []
        for pat in patterns:
            expanded = pat
            ok = True
            for key, value in values.items():
                token = "{" + key + "}"
                if token not in expanded:
                    continue
                try:
                    check_id(value or "", what=key)
                except (ContractError, ValueError):
                    ok = False
                    break
                expanded = expanded.replace(token, value or "")
            if ok and "{" not in expanded:
                out.append(expanded)
        return out

    def may_publish(self, who: Identity, topic: str) -> bool:
        """True if ``who`` may publish on the concrete ``topic``."""
        grants = self._publish_grants.get(who)
        if grants is None:
            role = self.roles.get(who.role)
            if role is None:
                return False
            grants = (self._expand(role.deny_publish, who), self._expand(role.publish, who))
            if len(self._publish_grants) >= MAX_REMEMBERED:
                self._publish_grants.clear()
            self._publish_grants[who] = grants
        deny, allow = grants
        if any(matches(topic, p) for p in deny):
            return False
        return any(matches(topic, p) for p in allow)

    def may_subscribe(self, who: Identity, flt: str) -> bool:
        """True if every topic ``flt`` can match is one ``who`` may read."""
        role = self.roles.get(who.role)
        if role is None:
            return False
        grants = [*self._expand(role.subscribe, who), *self._expand(EVERYONE.subscribe, who)]
        flt = unshared(flt)  # a shared subscription reads what its filter reads
        return any(filter_within(flt, p) for p in grants)
