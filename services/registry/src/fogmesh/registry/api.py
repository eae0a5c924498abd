"""The registry's queries over request / reply on ``fm/v1/api/{tenant}/{resource}/{action}``,
and a tenant's workload commands (``workloads/{action}``), relayed to the agents by
:class:`fogmesh.registry.relay.WorkloadRelay`.

Each handler reads the database in a worker thread. The tenant is the topic's; a request whose
``tenant`` field names another is refused (``unauthorised``). A bad cursor is
``invalid_request``, a missing node or app ``not_found``, an unknown action of one of the
registry's resources ``invalid_request``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine

from fogmesh.bus import Action, Bus, MessageContext, Refusal, RequestRouter
from fogmesh.protocol import ErrorCode, Request, queries, topics
from fogmesh.registry.cursor import BadCursor
from fogmesh.registry.db import reads
from fogmesh.registry.relay import RELAY_MAX_PAYLOAD, WorkloadRelay, topic_tenant
from fogmesh.registry.replicas import shared_filter

__all__ = ["QueryApi"]

_T = TypeVar("_T")


class QueryApi:
    """Answers the registry's queries from ``engine``."""

    def __init__(self, engine: Engine, relay: WorkloadRelay | None = None) -> None:
        self.engine = engine
        self.relay = relay or WorkloadRelay(engine)
        actions: dict[str, dict[str, Action[Any]]] = {
            queries.NODES_RESOURCE: {
                "list": Action(queries.ListNodes, self.list_nodes),
                "get": Action(queries.GetNode, self.get_node),
            },
            queries.WORKLOADS_RESOURCE: {
                "list": Action(queries.ListWorkloads, self.list_workloads),
                **self.relay.actions(),
            },
            queries.EVENTS_RESOURCE: {"list": Action(queries.ListEvents, self.list_events)},
            queries.REGISTRY_APPS_RESOURCE: {
                "list": Action(queries.ListRegistryApps, self.list_apps),
                "get": Action(queries.GetRegistryApp, self.get_app),
            },
        }
        self.routers = [
            RequestRouter(
                topics.api_filter(resource),
                by_name,
                what=f"{resource} action",
                # an upload carries its file (base64) through the relay
                max_payload=RELAY_MAX_PAYLOAD if resource == queries.WORKLOADS_RESOURCE else None,
            )
            for resource, by_name in actions.items()
        ]

    def attach(self, bus: Bus, *, share: str | None = None) -> None:
        """Serve each resource under one filter (``fm/v1/api/+/{resource}/+``); with replicas,
        as members of the shared subscription ``share`` (one replica answers each query)."""
        for router in self.routers:
            router.filter = shared_filter(router.filter, share)
            router.attach(bus)

    @staticmethod
    def tenant(request: Request, ctx: MessageContext) -> str:
        """The tenant of the topic; refuse a request that claims another."""
        return topic_tenant(request, ctx)

    async def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await asyncio.to_thread(fn, self.engine, *args)
        except BadCursor as exc:
            raise Refusal(ErrorCode.INVALID_REQUEST, str(exc)) from exc

    async def _answer(self, ctx: MessageContext, reply: Any) -> None:
        await ctx.reply(reply)

    async def list_nodes(self, msg: queries.ListNodes, ctx: MessageContext) -> None:
        """``nodes/list``."""
        self.tenant(msg, ctx)
        nodes, cursor = await self._read(reads.list_nodes, msg)
        await self._answer(ctx, queries.NodeListReply.to(msg, nodes=nodes, next_cursor=cursor))

    async def get_node(self, msg: queries.GetNode, ctx: MessageContext) -> None:
        """``nodes/get``."""
        self.tenant(msg, ctx)
        node = await self._read(reads.get_node, msg.node, msg.history)
        if node is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no node {msg.node!r}")
        await self._answer(ctx, queries.NodeReply.to(msg, node=node))

    async def list_workloads(self, msg: queries.ListWorkloads, ctx: MessageContext) -> None:
        """``workloads/list``: the tenant's own only."""
        tenant = self.tenant(msg, ctx)
        items, cursor = await self._read(reads.list_workloads, tenant, msg)
        await self._answer(
            ctx, queries.WorkloadListReply.to(msg, workloads=items, next_cursor=cursor)
        )

    async def list_events(self, msg: queries.ListEvents, ctx: MessageContext) -> None:
        """``events/list``: fleet events and the tenant's own."""
        tenant = self.tenant(msg, ctx)
        items, cursor = await self._read(reads.list_events, tenant, msg)
        await self._answer(ctx, queries.EventListReply.to(msg, events=items, next_cursor=cursor))

    async def list_apps(self, msg: queries.ListRegistryApps, ctx: MessageContext) -> None:
        """``registry-apps/list``: the tenant's own only."""
        tenant = self.tenant(msg, ctx)
        items, cursor = await self._read(reads.list_apps, tenant, msg)
        await self._answer(
            ctx, queries.RegistryAppListReply.to(msg, apps=items, next_cursor=cursor)
        )

    async def get_app(self, msg: queries.GetRegistryApp, ctx: MessageContext) -> None:
        """``registry-apps/get``: the tenant's own only (another's is ``not_found``)."""
        tenant = self.tenant(msg, ctx)
        app = await self._read(reads.get_app, tenant, msg.app)
        if app is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"no app {msg.app!r} for tenant {tenant!r}")
        await self._answer(ctx, queries.RegistryAppReply.to(msg, app=app))
