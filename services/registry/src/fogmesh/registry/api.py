"""The registry's queries over request / reply on ``fm/v1/api/{tenant}/{resource}/{action}``.

Each handler reads the database in a worker thread. The tenant is the topic's; a request whose
``tenant`` field names another is refused (``unauthorised``). A bad cursor is
``invalid_request``, a missing node or app ``not_found``, an unknown action of one of the
registry's resources ``invalid_request``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import ConfigDict, ValidationError
from sqlalchemy import Engine

from fogmesh.bus import Bus, MessageContext, Refusal
from fogmesh.protocol import ErrorCode, Request, error_info_from_validation, topics
from fogmesh.protocol.queries import (
    EVENTS_RESOURCE,
    NODES_RESOURCE,
    REGISTRY_APPS_RESOURCE,
    WORKLOADS_RESOURCE,
    EventListReply,
    GetNode,
    GetRegistryApp,
    ListEvents,
    ListNodes,
    ListRegistryApps,
    ListWorkloads,
    NodeListReply,
    NodeReply,
    RegistryAppListReply,
    RegistryAppReply,
    WorkloadListReply,
)
from fogmesh.registry.cursor import BadCursor
from fogmesh.registry.db import reads

__all__ = ["QueryApi"]

_T = TypeVar("_T")
_Handler = Callable[[Any, MessageContext], Awaitable[None]]


class _AnyRequest(Request):
    """Any request on a registry resource, before it is validated as its action's model."""

    model_config = ConfigDict(extra="allow")


class QueryApi:
    """Answers the registry's queries from ``engine``."""

    ACTIONS: dict[str, frozenset[str]] = {
        NODES_RESOURCE: frozenset({"list", "get"}),
        WORKLOADS_RESOURCE: frozenset({"list"}),
        EVENTS_RESOURCE: frozenset({"list"}),
        REGISTRY_APPS_RESOURCE: frozenset({"list", "get"}),
    }

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._routes: dict[tuple[str, str], tuple[type[Request], _Handler]] = {}

    def attach(self, bus: Bus) -> None:
        """Subscribe to each resource once (``fm/v1/api/+/{resource}/+``) and route by action.

        One subscription per resource, not one per action plus a catch-all: brokers may deliver
        a message once per matching subscription, which would answer a request twice.
        """
        self._routes = {
            (NODES_RESOURCE, "list"): (ListNodes, self.list_nodes),
            (NODES_RESOURCE, "get"): (GetNode, self.get_node),
            (WORKLOADS_RESOURCE, "list"): (ListWorkloads, self.list_workloads),
            (EVENTS_RESOURCE, "list"): (ListEvents, self.list_events),
            (REGISTRY_APPS_RESOURCE, "list"): (ListRegistryApps, self.list_apps),
            (REGISTRY_APPS_RESOURCE, "get"): (GetRegistryApp, self.get_app),
        }
        for resource in self.ACTIONS:
            bus.subscribe(topics.api_filter(resource), _AnyRequest, self._route)

    async def _route(self, msg: _AnyRequest, ctx: MessageContext) -> None:
        ref = ctx.ref
        if ref is None or ref.resource is None or ref.action is None:
            return
        route = self._routes.get((ref.resource, ref.action))
        if route is None:
            known = ", ".join(sorted(self.ACTIONS.get(ref.resource, frozenset())))
            raise Refusal(
                ErrorCode.INVALID_REQUEST,
                f"unknown action {ref.resource}/{ref.action}; try {known}",
            )
        model, handler = route
        try:
            request = model.model_validate(msg.model_dump())
        except ValidationError as exc:
            await ctx.reply_error(error_info_from_validation(exc))
            return
        await handler(request, ctx)

    @staticmethod
    def tenant(request: Request, ctx: MessageContext) -> str:
        """The tenant of the topic; refuse a request that claims another."""
        tenant = ctx.ref.tenant if ctx.ref is not None else None
        if tenant is None:
            raise Refusal(ErrorCode.INVALID_REQUEST, "not an api topic")
        if request.tenant is not None and request.tenant != tenant:
            raise Refusal(
                ErrorCode.UNAUTHORISED, f"request for tenant {request.tenant!r} on {tenant!r}"
            )
        return tenant

    async def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await asyncio.to_thread(fn, self.engine, *args)
        except BadCursor as exc:
            raise Refusal(ErrorCode.INVALID_REQUEST, str(exc)) from exc

    async def _answer(self, ctx: MessageContext, reply: Any) -> None:
        await ctx.reply(reply)

    async def list_nodes(self, msg: ListNodes, ctx: MessageContext) -> None:
        """``nodes/list``."""
        self.tenant(msg, ctx)
        nodes, cursor = await self._read(reads.list_nodes, msg)
        await self._answer(ctx, NodeListReply.to(msg, nodes=nodes, next_cursor=cursor))

    async def get_node(self, msg: GetNode, ctx: MessageContext) -> None:
        """``nodes/get``."""
        self.tenant(msg, ctx)
        node = await self._read(reads.get_node, msg.node, msg.history)
        if node is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no node {msg.node!r}")
        await self._answer(ctx, NodeReply.to(msg, node=node))

    async def list_workloads(self, msg: ListWorkloads, ctx: MessageContext) -> None:
        """``workloads/list``: the tenant's own only."""
        tenant = self.tenant(msg, ctx)
        items, cursor = await self._read(reads.list_workloads, tenant, msg)
        await self._answer(ctx, WorkloadListReply.to(msg, workloads=items, next_cursor=cursor))

    async def list_events(self, msg: ListEvents, ctx: MessageContext) -> None:
        """``events/list``: fleet events and the tenant's own."""
        tenant = self.tenant(msg, ctx)
        items, cursor = await self._read(reads.list_events, tenant, msg)
        await self._answer(ctx, EventListReply.to(msg, events=items, next_cursor=cursor))

    async def list_apps(self, msg: ListRegistryApps, ctx: MessageContext) -> None:
        """``registry-apps/list``: the tenant's own only."""
        tenant = self.tenant(msg, ctx)
        items, cursor = await self._read(reads.list_apps, tenant, msg)
        await self._answer(ctx, RegistryAppListReply.to(msg, apps=items, next_cursor=cursor))

    async def get_app(self, msg: GetRegistryApp, ctx: MessageContext) -> None:
        """``registry-apps/get``: the tenant's own only (another's is ``not_found``)."""
        tenant = self.tenant(msg, ctx)
        app = await self._read(reads.get_app, tenant, msg.app)
        if app is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no app {msg.app!r} for tenant {tenant!r}")
        await self._answer(ctx, RegistryAppReply.to(msg, app=app))
