"""One Docker network per tenant: created on demand, shared by the agents of a host."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from fogmesh.agent.runtime.base import LABEL_TENANT
from fogmesh.agent.runtime.docker_names import network_name
from fogmesh.agent.runtime.engine import Engine, EngineError
from fogmesh.agent.runtime.errors import InstanceNotFound

__all__ = ["TenantNetworks", "network_vanished"]


class TenantNetworks:
    """The ``fm-{tenant}`` networks of one Docker engine."""

    def __init__(self, docker: Engine, extra_labels: Mapping[str, str]) -> None:
        self._docker = docker
        self._extra_labels = dict(extra_labels)
        self._lock = asyncio.Lock()

    async def ensure(self, tenant: str) -> str:
        """The id of the tenant's network, created if missing.

        Docker's own duplicate check is racy (two creates at once can both succeed, and a
        name then becomes "ambiguous"), so creation is serialised in this process, twins made
        by other agents on the host are resolved to the oldest, and callers get its id
        (containers name the network, not this id: see ``DockerRuntime.create``).
        """
        name = network_name(tenant)
        async with self._lock:
            found = await self._named(name)
            if not found:
                labels = {**self._extra_labels, LABEL_TENANT: tenant, "fogmesh.managed": "true"}
                try:
                    await self._docker.create_network(
                        {"Name": name, "Driver": "bridge", "CheckDuplicate": True, "Labels": labels}
                    )
                except EngineError as exc:
                    if exc.status != 409:  # created meanwhile by another agent on this host
                        raise
                found = await self._named(name)
            if not found:
                raise InstanceNotFound(f"network {name} vanished while being created")
            oldest, *twins = sorted(found, key=lambda n: (str(n.get("Created", "")), n["Id"]))
            for twin in twins:
                with contextlib.suppress(EngineError):
                    await self._docker.remove_network(str(twin["Id"]))
            return str(oldest["Id"])

    async def _named(self, name: str) -> list[dict[str, Any]]:
        listed = await self._docker.networks({"name": [name]})
        return [n for n in listed if n.get("Name") == name]

    async def drop_if_unused(self, tenant: str) -> None:
        """Remove the tenant's network once no container of any node uses it.

        Agents of several nodes (and several fleets) may share one engine and so one
        ``fm-{tenant}`` network. A container that is created but not started is not attached
        yet (``Containers`` is empty), so every container of the tenant, in any state and of
        any node, counts; Docker itself refuses to remove a network with attached endpoints.
        A peer may still create a container between this check and the removal: its create
        and start recreate the network (:meth:`ensure`, :func:`network_vanished`).
        """
        name = network_name(tenant)
        async with self._lock:
            with contextlib.suppress(EngineError):
                info = await self._docker.inspect_network(name)
                if info.get("Containers") or await self._configured(tenant, name):
                    return
                await self._docker.remove_network(str(info.get("Id") or name))

    async def _configured(self, tenant: str, name: str) -> bool:
        """Whether any container (any state, any node) is the tenant's or names the network."""
        for filters in ({"label": [f"{LABEL_TENANT}={tenant}"]}, {"network": [name]}):
            found = await self._docker.containers(filters)
            if found:
                return True
        return False


def network_vanished(exc: EngineError) -> bool:
    """Whether a create or start failed because the container's network no longer exists, or
    its name became ambiguous (a twin made by a racing agent); :meth:`TenantNetworks.ensure`
    mends both."""
    message = str(exc.message).lower()
    return "network" in message and (exc.status == 404 or "ambiguous" in message)
