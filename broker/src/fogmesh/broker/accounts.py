"""The broker's live account book: the mesh file's users, overridden by retained records.

Records (``fm/v1/accounts/{username}``, ``fm/v1/tenants/{tenant}``, see
:mod:`fogmesh.protocol.accounts`) are read straight from the broker's retained store at each
look-up, so a record that arrives (from a client or over a link) counts at once, and one
restored from disk after a restart too. Parsed records are cached by their payload bytes.
The mesh file's users are the bootstrap set: a record of the same name replaces one, and a
revoked record (a tombstone) refuses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from fogmesh.broker.config import UserSpec
from fogmesh.protocol.accounts import (
    AccountRecord,
    TenantRecord,
    account_topic,
    tenant_topic,
)
from fogmesh.protocol.topics import ROOT

__all__ = ["ACCOUNT_PREFIX", "TENANT_PREFIX", "AccountBook", "to_user"]

log = logging.getLogger(__name__)
ACCOUNT_PREFIX = f"{ROOT}/accounts/"
TENANT_PREFIX = f"{ROOT}/tenants/"
_CACHE_MAX = 4096
_M = TypeVar("_M", AccountRecord, TenantRecord)


def _payload(retained: Mapping[str, Any], topic: str) -> bytes | None:
    msg = retained.get(topic)
    data = getattr(msg, "data", None)
    return bytes(data) if data else None


class AccountBook:
    """Who may connect, as what: bootstrap users plus the live records of ``retained()``."""

    def __init__(
        self,
        bootstrap: list[UserSpec],
        retained: Callable[[], Mapping[str, Any]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``retained`` returns the broker's retained store (topic -> message with ``data``)."""
        self._bootstrap = {u.username: u for u in bootstrap}
        self._retained = retained
        self._clock = clock
        self._accounts: dict[bytes, AccountRecord | None] = {}
        self._tenants: dict[bytes, TenantRecord | None] = {}

    def record(self, username: str) -> AccountRecord | None:
        """The retained record of ``username`` (also a tombstone), or None."""
        try:
            topic = account_topic(username)
        except ValueError:
            return None
        data = _payload(self._retained(), topic)
        if data is None:
            return None
        if data not in self._accounts:
            if len(self._accounts) > _CACHE_MAX:
                self._accounts.clear()
            self._accounts[data] = _parse(AccountRecord, data, topic)
        rec = self._accounts[data]
        return rec if rec is not None and rec.username == username else None

    def tenant_revoked(self, tenant: str | None) -> bool:
        """True if ``tenant`` was deleted (a revoked tenant record is retained)."""
        if not tenant:
            return False
        try:
            topic = tenant_topic(tenant)
        except ValueError:
            return False
        data = _payload(self._retained(), topic)
        if data is None:
            return False
        if data not in self._tenants:
            if len(self._tenants) > _CACHE_MAX:
                self._tenants.clear()
            self._tenants[data] = _parse(TenantRecord, data, topic)
        rec = self._tenants[data]
        return rec is not None and rec.name == tenant and rec.revoked

    def user(self, username: str) -> UserSpec | None:
        """The account ``username`` may connect as now, or None if it is unknown or refused."""
        rec = self.record(username)
        if rec is not None:
            user = to_user(rec) if rec.live(self._clock()) else None
        else:
            user = self._bootstrap.get(username)
        if user is None:
            return None
        if user.role == "tenant" and self.tenant_revoked(user.tenant or user.username):
            return None
        return user


def to_user(rec: AccountRecord) -> UserSpec | None:
    """The :class:`UserSpec` a live record stands for (None if its hash is malformed)."""
    try:
        return UserSpec(
            username=rec.username,
            password_hash=rec.password_hash,
            role=rec.role,
            node=rec.node,
            tenant=rec.account_tenant,
        )
    except ValidationError:
        return None


def _parse(model: type[_M], data: bytes, topic: str) -> _M | None:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        log.warning("ignored an invalid record on %s: %s", topic, exc.error_count())
        return None
