"""Roles and topic ACLs: who may publish and subscribe where.

A role lists patterns with placeholders filled from the client's identity. A placeholder whose
value is not a plain id (say a username holding ``+``) makes its pattern match nothing, so a
crafted name can never widen a grant.
"""

from __future__ import annotations

from dataclasses import dataclass

from fogmesh.broker.config import RoleSpec, UserSpec
from fogmesh.broker.topicmatch import filter_within, matches
from fogmesh.protocol import ContractError, check_id

__all__ = ["DEFAULT_ROLES", "Identity", "RoleTable"]

_NODE = "fm/v1/nodes/{node}"
DEFAULT_ROLES: dict[str, RoleSpec] = {
    # registry, scheduler, migrator...: the platform itself writes everywhere
    "service": RoleSpec(publish=["#"], subscribe=["#"]),
    # bridge links carry whatever their rules say; the rules are the limit
    "bridge": RoleSpec(publish=["#"], subscribe=["#"]),
    "node": RoleSpec(
        publish=[f"{_NODE}/#"],
        deny_publish=[f"{_NODE}/desired"],  # desired state belongs to the scheduler
        subscribe=[f"{_NODE}/#"],
    ),
    "tenant": RoleSpec(
        publish=["fm/v1/api/{tenant}/#", "fm/v1/data/{tenant}/#"],
        subscribe=["fm/v1/data/{tenant}/#", "fm/v1/events/tenants/{tenant}/#"],
    ),
}
# Every authenticated client may answer anyone and read its own replies.
_COMMON = RoleSpec(publish=["fm/v1/reply/+"], subscribe=["fm/v1/reply/{client}"])


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
        role = self.roles.get(who.role)
        if role is None:
            return False
        if any(matches(topic, p) for p in self._expand(role.deny_publish, who)):
            return False
        grants = [*self._expand(role.publish, who), *self._expand(_COMMON.publish, who)]
        return any(matches(topic, p) for p in grants)

    def may_subscribe(self, who: Identity, flt: str) -> bool:
        """True if every topic ``flt`` can match is one ``who`` may read."""
        role = self.roles.get(who.role)
        if role is None:
            return False
        grants = [*self._expand(role.subscribe, who), *self._expand(_COMMON.subscribe, who)]
        return any(filter_within(flt, p) for p in grants)
