"""amqtt plugins for authentication and topic ACLs, driven by the mesh file.

Replaces amqtt's ``AnonymousAuthPlugin``, whose ``allow_anonymous: false`` still admits any
client that merely sends a username: here a username must exist and its password must match.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from fogmesh.broker.acl import Identity, RoleTable
from fogmesh.broker.config import BrokerSpec, UserSpec
from fogmesh.broker.passwords import verify_password

__all__ = ["FREE_CLIENT_ID_ROLES", "MeshAclPlugin", "MeshAuthPlugin", "owns_client_id"]

log = logging.getLogger(__name__)
_ANON_ROLE = "service"  # an open broker (allow_anonymous) trusts everyone, as Mosquitto does


@dataclass
class _PluginConfig:
    spec_json: str = ""


def _spec(context: BaseContext) -> BrokerSpec:
    cfg = context.config
    raw = getattr(cfg, "spec_json", "")
    return BrokerSpec.model_validate_json(raw)


FREE_CLIENT_ID_ROLES = frozenset({"service", "bridge"})
"""Roles whose clients may use any client id (the platform's own services and links)."""


def owns_client_id(username: str, client_id: str) -> bool:
    """A node or tenant account may connect only as ``{username}`` or ``{username}-...``."""
    return client_id == username or client_id.startswith(f"{username}-")


class MeshAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Username / password check against the ``$7$`` hashes of the mesh file."""

    Config = _PluginConfig

    def __init__(self, context: BaseContext) -> None:
        """Load the broker's users from the plugin config."""
        super().__init__(context)
        spec = _spec(context)
        self._anonymous = spec.allow_anonymous
        self._users: dict[str, UserSpec] = {u.username: u for u in spec.users}

    async def authenticate(self, *, session: Session) -> bool | None:
        """Admit a known user with the right password, or an anonymous client if allowed."""
        username = session.username
        if not username:
            if self._anonymous:
                # amqtt never queues for "anonymous" sessions; we keep them normal on purpose
                return True
            log.info("refused %s: no credentials", session.client_id)
            return False
        user = self._users.get(username)
        if user is None or not verify_password(session.password or "", user.password_hash):
            log.info("refused %s: bad username or password", session.client_id)
            return False
        if user.role not in FREE_CLIENT_ID_ROLES and not owns_client_id(
            username, session.client_id or ""
        ):
            # Otherwise any account could take over another's session (MQTT hands a client
            # id to the newest connection): kick a node agent off, fire its will, read replies.
            log.info("refused %s: client id not owned by %s", session.client_id, username)
            return False
        return True


class MeshAclPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Publish and subscribe rights from the roles of the mesh file."""

    Config = _PluginConfig

    def __init__(self, context: BaseContext) -> None:
        """Load users and roles from the plugin config."""
        super().__init__(context)
        spec = _spec(context)
        self._anonymous = spec.allow_anonymous
        self._users: dict[str, UserSpec] = {u.username: u for u in spec.users}
        self._table = RoleTable(spec.roles)

    def _identity(self, session: Session | None) -> Identity | None:
        if session is None:
            return None
        client_id = session.client_id or ""
        if not session.username:
            if self._anonymous:
                return Identity(username="anonymous", client_id=client_id, role=_ANON_ROLE)
            return None
        user = self._users.get(session.username)
        return None if user is None else self._table.identity(user, client_id)

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        """Check one publish or subscribe; deliveries were vetted at subscribe time."""
        if action == Action.RECEIVE:
            return True
        who = self._identity(session)
        if who is None or not topic:
            return False
        if action == Action.PUBLISH:
            allowed = self._table.may_publish(who, topic)
        elif action == Action.SUBSCRIBE:
            allowed = self._table.may_subscribe(who, topic)
        else:
            return False
        if not allowed:
            log.info("ACL refused %s %s on %s", who.client_id, action, topic)
        return allowed
