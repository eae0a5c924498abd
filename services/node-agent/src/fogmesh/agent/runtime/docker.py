"""The Docker runtime plugin, through the agent's own engine client (:mod:`.engine`).

Containers carry the ``fogmesh.*`` labels (:func:`~fogmesh.agent.runtime.base.workload_labels`)
and are found by ``fogmesh.node`` + ``fogmesh.tenant`` + ``fogmesh.workload`` (the workload's
key), so a restarted agent finds its containers again and two tenants' equal names never meet.

What a container may do is decided here, not by the manifest (which has no field for it):
never privileged, no capabilities added, no host path mounted (named volumes only), no
device but those the spec asks for and the node's :class:`~fogmesh.agent.devices.DeviceCatalog`
resolves (docs/devices.md), ``no-new-privileges``, and the host network only when the
operator's node config says so (``docker_host_network``); :func:`~.docker_config.host_config`
builds it and checks. Names: see :mod:`fogmesh.agent.runtime.docker_names`. Docker's own restart
policy is always ``no``: the agent's reconciler decides about restarts.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fogmesh.agent.devices import DeviceCatalog, DeviceRefused
from fogmesh.agent.runtime.base import (
    LABEL_NODE,
    LABEL_TENANT,
    LABEL_WORKLOAD,
    InstanceState,
    InstanceStatus,
    Usage,
    split_key,
    workload_env,
    workload_key,
)
from fogmesh.agent.runtime.docker_create import container_config, create_volumes
from fogmesh.agent.runtime.docker_files import load_snapshot, read_file, take_snapshot
from fogmesh.agent.runtime.docker_images import ensure_image, ensure_ref_image
from fogmesh.agent.runtime.docker_names import container_name, docker_safe, network_name
from fogmesh.agent.runtime.docker_networks import TenantNetworks, network_vanished
from fogmesh.agent.runtime.docker_state import status_from_inspect, usage_from_stats
from fogmesh.agent.runtime.engine import Engine, EngineError, Filters
from fogmesh.agent.runtime.errors import (
    InstanceExists,
    InstanceNotFound,
    RuntimeFailure,
    translate_errors,
)
from fogmesh.agent.runtime.tarutil import one_file_tar, read_manifest
from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec

if TYPE_CHECKING:
    import tarfile

    from fogmesh.agent.artefact_fetch import SiteFetcher

__all__ = ["DockerRuntime"]

log = logging.getLogger(__name__)


class DockerRuntime:
    """Runs workloads as Docker containers on the local engine.

    ``node`` is this agent's node id (label ``fogmesh.node``); ``prefix`` prefixes container
    names (default ``fm-{node}-``; ``""`` for the paper's bare ``{tenant}-{app}-{component}-
    {replica}``). ``extra_labels`` go on every container, volume and network created (tests use
    one per run to clean up). With ``always_pull`` prepare pulls even when the image is present;
    otherwise it pulls only a missing image, and a failed pull of a present image is not fatal.
    """

    def __init__(
        self,
        node: str,
        *,
        prefix: str | None = None,
        engine: Engine | None = None,
        url: str | None = None,
        always_pull: bool = False,
        extra_labels: Mapping[str, str] | None = None,
        pull_timeout: float = 900.0,
        env_defaults: Mapping[str, str] | None = None,
        host_network: bool = False,
        devices: DeviceCatalog | None = None,
    ) -> None:
        self.node = node
        self._devices = devices if devices is not None else DeviceCatalog()
        # Variables every workload gets under its own env (e.g. the broker it should use).
        self._env_defaults = dict(env_defaults or {})
        # Host networking lets workloads reach a broker that listens on loopback only; it
        # gives up the per-tenant network, so it is for single-tenant or trusted fleets.
        self._host_network = host_network
        self.prefix = f"fm-{docker_safe(node)}-" if prefix is None else prefix
        self._docker = engine if engine is not None else Engine(url)
        self._always_pull = always_pull
        self._extra_labels = dict(extra_labels or {})
        self._pull_timeout = pull_timeout
        self._networks = TenantNetworks(self._docker, self._extra_labels)
        self.fetcher: SiteFetcher | None = None
        """Fetches ``image_ref`` from the site's cache (set by the agent)."""

    @property
    def kind(self) -> RuntimeKind:
        """Always :attr:`RuntimeKind.DOCKER`."""
        return RuntimeKind.DOCKER

    @property
    def engine(self) -> Engine:
        """The engine client (the node's artefact collector unloads image refs with it)."""
        return self._docker

    # -- lookup -------------------------------------------------------------------------------

    def _filters(self, **labels: str) -> Filters:
        # The extra labels are part of the identity: two fleets (or test runs) on one engine
        # with the same node names never see, adopt or remove each other's containers.
        wanted = [
            f"{LABEL_NODE}={self.node}",
            *(f"{k}={v}" for k, v in self._extra_labels.items()),
            *(f"{k}={v}" for k, v in labels.items()),
        ]
        return {"label": wanted}

    def _key_labels(self, key: str) -> dict[str, str]:
        tenant, name = split_key(key)
        return {LABEL_TENANT: tenant, LABEL_WORKLOAD: name}

    def _key_filters(self, key: str) -> Filters:
        return self._filters(**self._key_labels(key))

    async def _find(self, key: str) -> str | None:
        """The id of the workload's container, if there is one."""
        found = await self._docker.containers(self._key_filters(key))
        return str(found[0]["Id"]) if found else None

    async def _get(self, key: str) -> str:
        container = await self._find(key)
        if container is None:
            raise InstanceNotFound(f"no container for workload {key!r} on node {self.node!r}")
        return container

    async def _inspect(self, key: str, container: str) -> InstanceStatus:
        return status_from_inspect(key, await self._docker.inspect_container(container))

    # -- Runtime ------------------------------------------------------------------------------

    async def prepare(self, spec: WorkloadSpec) -> None:
        """Pull ``spec.image`` unless present (or always, with ``always_pull``); an
        ``image_ref`` is fetched from the site's cache and loaded instead."""
        if spec.image_ref is not None:
            await ensure_ref_image(
                self._docker, self.fetcher, spec, spec.image_ref, timeout=self._pull_timeout
            )
            return
        await ensure_image(
            self._docker, str(spec.image), always_pull=self._always_pull, timeout=self._pull_timeout
        )

    async def create(self, spec: WorkloadSpec) -> InstanceStatus:
        """Create the container (network and volumes first) with limits, env and labels."""
        key = workload_key(spec.tenant, spec.name)
        with translate_errors(f"create {spec.name}"):
            existing = await self._find(key)
            if existing is not None:
                status = await self._inspect(key, existing)
                if status.spec_hash == spec.spec_hash():
                    return status
                raise InstanceExists(
                    f"workload {key!r} exists with spec {status.spec_hash}; remove it first"
                )
            cname = container_name(spec, self.prefix)
            if not self._host_network:
                await self._networks.ensure(spec.tenant)
            # By name, not id: Docker accepts a create naming a network that a peer's removal
            # just deleted and keeps a dead id for good (no start can succeed), while a name is
            # resolved again at the start, after :meth:`start` has made the network again.
            network = "host" if self._host_network else network_name(spec.tenant)
            mounts = await create_volumes(
                self._docker, spec, cname, node=self.node, extra_labels=self._extra_labels
            )
            try:
                devices = self._devices.given(spec.devices)
            except DeviceRefused as exc:
                raise RuntimeFailure(f"create {spec.name}: {exc}") from exc
            config = container_config(
                spec,
                node=self.node,
                extra_labels=self._extra_labels,
                env=self._env(spec),
                network=network,
                mounts=mounts,
                devices=devices,
                host_network=self._host_network,
            )
            try:
                container = await self._create_container(config, cname, spec.tenant)
            except EngineError as exc:
                if exc.status == 409:
                    raise InstanceExists(f"create {spec.name}: {exc.message}") from exc
                raise
            return await self._inspect(key, container)

    async def _create_container(self, config: dict[str, Any], cname: str, tenant: str) -> str:
        try:
            return await self._docker.create_container(config, cname)
        except EngineError as exc:
            if self._host_network or not network_vanished(exc):
                raise
        # Another node's agent on this engine removed the tenant's network between our
        # ensure and this create (or made a twin of it): make it again (one of it) and retry.
        await self._networks.ensure(tenant)
        log.warning("network of tenant %s vanished during create; made it again", tenant)
        return await self._docker.create_container(config, cname)

    async def start(self, key: str) -> InstanceStatus:
        """Start the container (a no-op if it runs)."""
        with translate_errors(f"start {key}", missing=InstanceNotFound):
            container = await self._get(key)
            try:
                await self._docker.start_container(container)
            except EngineError as exc:
                if not network_vanished(exc):
                    raise
                # Created while its network existed, which a peer's removal then took (a
                # created container is not attached, so Docker let it go), or a racing agent
                # made a twin: the container names its network, so making it again (one of
                # it) lets it start.
                tenant, _ = split_key(key)
                await self._networks.ensure(tenant)
                log.warning("network of %s vanished before its start; made it again", key)
                await self._docker.start_container(container)
            return await self._inspect(key, container)

    async def stop(self, key: str, timeout: float = 10.0) -> InstanceStatus:
        """``docker stop -t timeout`` (SIGTERM, then SIGKILL). A no-op if absent or stopped."""
        with translate_errors(f"stop {key}"):
            container = await self._find(key)
            if container is None:
                return InstanceStatus(key, InstanceState.ABSENT, RuntimeKind.DOCKER)
            await self._docker.stop_container(container, max(math.ceil(timeout), 0))
            return await self._inspect(key, container)

    async def remove(self, key: str, *, keep_state: bool = False) -> None:
        """Remove the container (forced), its volumes unless ``keep_state``, and the tenant's
        network if nothing else is attached to it."""
        with translate_errors(f"remove {key}"):
            container = await self._find(key)
            tenant = None
            if container is not None:
                info = await self._docker.inspect_container(container)
                tenant = ((info.get("Config") or {}).get("Labels") or {}).get(LABEL_TENANT)
                with contextlib.suppress(EngineError):
                    # a large writable layer on a slow disk takes a while to delete
                    await self._docker.remove_container(
                        container, force=True, timeout=self._pull_timeout
                    )
            if not keep_state:
                for volume in await self._docker.volumes(self._key_filters(key)):
                    await self._docker.remove_volume(str(volume["Name"]))
            if tenant:
                await self._networks.drop_if_unused(tenant)

    async def status(self, key: str) -> InstanceStatus:
        """The container's status, or ``ABSENT``."""
        with translate_errors(f"status {key}"):
            container = await self._find(key)
            if container is None:
                return InstanceStatus(key, InstanceState.ABSENT, RuntimeKind.DOCKER)
            try:
                return await self._inspect(key, container)
            except EngineError as exc:  # removed between list and inspect
                if exc.status != 404:
                    raise
                return InstanceStatus(key, InstanceState.ABSENT, RuntimeKind.DOCKER)

    async def list_instances(self) -> list[InstanceStatus]:
        """Every container labelled with this node."""
        with translate_errors("list containers"):
            found = await self._docker.containers(self._filters())
            result = []
            for container in found:
                with contextlib.suppress(EngineError):  # the key is in its labels
                    result.append(await self._inspect("", str(container["Id"])))
            return sorted(result, key=lambda s: s.name)

    async def logs(self, key: str, tail: int = 100, since: float | None = None) -> list[str]:
        """The container's last ``tail`` log lines (stdout and stderr), after ``since``."""
        if tail <= 0:
            return []
        with translate_errors(f"logs {key}", missing=InstanceNotFound):
            container = await self._get(key)
            since_s = None if since is None else int(since)
            text = await self._docker.logs(container, tail=tail, since=since_s)
            return text.splitlines()[-tail:]

    async def put_file(self, key: str, path: str, data: bytes, mode: int = 0o644) -> None:
        """Put ``data`` at absolute ``path`` in the container (``PUT /archive``); missing parent
        directories are created by Docker (mode 0755)."""
        archive = one_file_tar(path, data, mode)
        with translate_errors(f"put_file {key}:{path}", missing=InstanceNotFound):
            container = await self._get(key)
            await self._docker.put_archive(container, "/", archive)

    async def get_file(self, key: str, path: str, limit: int) -> bytes:
        """The regular file at absolute ``path`` in the container (``GET /archive``)."""
        with translate_errors(f"get_file {key}:{path}", missing=InstanceNotFound):
            container = await self._get(key)
            return await read_file(self._docker, container, path, limit)

    async def snapshot(self, key: str) -> bytes:
        """A tar of the container's volumes' content (or, without volumes, of its changed
        files); see :mod:`fogmesh.agent.runtime.docker_state`."""
        with translate_errors(f"snapshot {key}", missing=InstanceNotFound):
            container = await self._get(key)
            return await take_snapshot(self._docker, container, key)

    async def restore(self, spec: WorkloadSpec, snapshot: bytes) -> InstanceStatus:
        """Create the container for ``spec`` and load ``snapshot`` into it (not started)."""
        import tarfile

        with (
            translate_errors(f"restore {spec.name}"),
            tarfile.open(fileobj=io.BytesIO(snapshot), mode="r:") as source,  # plain, as made
        ):
            return await self._restore(spec, source)

    async def _restore(self, spec: WorkloadSpec, source: tarfile.TarFile) -> InstanceStatus:
        manifest = read_manifest(source, runtime="docker")
        status = await self.create(spec)
        container = await self._get(workload_key(spec.tenant, spec.name))
        await load_snapshot(self._docker, container, spec, source, manifest)
        return status

    async def usage(self, key: str) -> Usage:
        """CPU and memory from one ``docker stats`` sample; zeros if not running."""
        with translate_errors(f"usage {key}", missing=InstanceNotFound):
            container = await self._get(key)
            if (await self._inspect(key, container)).state is not InstanceState.RUNNING:
                return Usage()
            sample = await self._docker.stats(container)
            return usage_from_stats(sample) if sample else Usage()

    async def close(self) -> None:
        """Close the connection to dockerd; containers keep running."""
        await self._docker.close()

    # -- helpers ------------------------------------------------------------------------------

    def _env(self, spec: WorkloadSpec) -> dict[str, str]:
        return {**self._env_defaults, **workload_env(spec, self.node)}
