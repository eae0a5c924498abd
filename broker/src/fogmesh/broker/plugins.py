"""amqtt plugins for authentication and topic ACLs, driven by the mesh file and live records.

Accounts come from :class:`fogmesh.broker.accounts.AccountBook`: the mesh file's users, then
the retained account and tenant records (``fm/v1/accounts/+``, ``fm/v1/tenants/+``). When a
record changes, every session it no longer admits (revoked, deleted tenant, new password) is
closed at once. Join requests (``fm/v1/join/+``) are redeemed here too (:mod:`.join`).

Replaces amqtt's ``AnonymousAuthPlugin``, whose ``allow_anonymous: false`` still admits any
client that merely sends a username: here a username must exist and its password must match.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from fogmesh.broker import join
from fogmesh.broker.accounts import ACCOUNT_PREFIX, TENANT_PREFIX, AccountBook
from fogmesh.broker.acl import Identity, RoleTable
from fogmesh.broker.config import BrokerSpec
from fogmesh.broker.passwords import verify_password
from fogmesh.protocol.accounts import JOIN_ROLE

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


def _book(context: BaseContext, spec: BrokerSpec) -> AccountBook:
    broker = getattr(context, "_broker_instance", None)
    # a context without a broker (a unit test of the plugin) has no retained store
    return AccountBook(spec.users, lambda: broker.retained_messages if broker else {})


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
        self._book = _book(context, spec)
        self._redeemer = join.Redeemer(context, self._book)
        # client id -> (username, hash it was admitted with): who to close when records change
        self._admitted: dict[str, tuple[str, str]] = {}
        self._closing: set[asyncio.Task[Any]] = set()

    async def authenticate(self, *, session: Session) -> bool | None:
        """Admit a known user with the right password, or an anonymous client if allowed."""
        username = session.username
        if not username:
            if self._anonymous:
                # amqtt never queues for "anonymous" sessions; we keep them normal on purpose
                return True
            log.info("refused %s: no credentials", session.client_id)
            return False
        user = self._book.user(username)
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
        self._admitted[session.client_id or ""] = (username, user.password_hash)
        return True

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: Any) -> None:
        """Forget what a session was admitted with (unless a newer connection took it over)."""
        del client_session
        session = self.context.get_session(client_id) if client_id else None
        if session is None or not session.transitions.is_connected():
            self._admitted.pop(client_id, None)

    async def on_broker_retained_message(
        self, *, client_id: str | None, retained_message: Any
    ) -> None:
        """An account or tenant record changed: close every session it no longer admits."""
        topic = retained_message.topic or ""
        if client_id is not None or not topic.startswith((ACCOUNT_PREFIX, TENANT_PREFIX)):
            return  # client_id set: a message queued for an offline session, not the store
        for cid, (username, admitted_hash) in list(self._admitted.items()):
            user = self._book.user(username)
            if user is not None and user.password_hash == admitted_hash:
                continue
            if user is None and (rec := self._book.record(username)) and rec.role == JOIN_ROLE:
                continue  # a redeemed token: its session still waits for the credential
            self._admitted.pop(cid, None)
            self._close(cid, username)

    def _close(self, client_id: str, username: str) -> None:
        broker = getattr(self.context, "_broker_instance", None)
        entry = broker.sessions.get(client_id) if broker is not None else None
        if entry is None or entry[1] is None:
            return
        session, handler = entry
        if not session.transitions.is_connected():
            return
        log.warning("closing %s: account %s was revoked or changed", client_id, username)
        task = asyncio.ensure_future(handler.handle_connection_closed())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def on_broker_message_broadcast(self, *, client_id: str, message: Any) -> None:
        """Redeem a join token's request (``fm/v1/join/{bootstrap}``)."""
        await self._redeemer.handle(client_id, message)


class MeshAclPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Publish and subscribe rights from the roles of the mesh file."""

    Config = _PluginConfig

    def __init__(self, context: BaseContext) -> None:
        """Load users and roles from the plugin config."""
        super().__init__(context)
        spec = _spec(context)
        self._anonymous = spec.allow_anonymous
        self._book = _book(context, spec)
        self._table = RoleTable(spec.roles)

    def _identity(self, session: Session | None) -> Identity | None:
        if session is None:
            return None
        client_id = session.client_id or ""
        if not session.username:
            if self._anonymous:
                return Identity(username="anonymous", client_id=client_id, role=_ANON_ROLE)
            return None
        user = self._book.user(session.username)
        return None if user is None else self._table.identity(user, client_id)

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        """amqtt's topic plugin call: :meth:`allows`."""
        return self.allows(session, topic, action)

    def allows(self, session: Session | None, topic: str | None, action: Action | None) -> bool:
        """Check one publish or subscribe; deliveries were vetted at subscribe time (the
        broker calls this directly, without amqtt's task per plugin and check)."""
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
