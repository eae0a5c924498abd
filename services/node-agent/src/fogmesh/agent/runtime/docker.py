"""The Docker runtime plugin, via aiodocker.

Containers carry the ``fogmesh.*`` labels (:func:`~fogmesh.agent.runtime.base.workload_labels`)
and are found by ``fogmesh.node`` + ``fogmesh.workload``, so a restarted agent finds its
containers again. Names: see :mod:`fogmesh.agent.runtime.docker_names`. Docker's own restart
policy is always ``no``: the agent's reconciler decides about restarts.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import tarfile
from collections.abc import Mapping
from typing import Any

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from fogmesh.agent.runtime.base import (
    LABEL_APP,
    LABEL_COMPONENT,
    LABEL_NODE,
    LABEL_TENANT,
    LABEL_WORKLOAD,
    InstanceState,
    InstanceStatus,
    Usage,
    workload_env,
    workload_labels,
)
from fogmesh.agent.runtime.docker_names import container_name, docker_safe
from fogmesh.agent.runtime.docker_names import volume_name as make_volume_name
from fogmesh.agent.runtime.docker_networks import TenantNetworks
from fogmesh.agent.runtime.docker_state import (
    SKIP_CHANGES,
    copy_member,
    repack,
    status_from_inspect,
    subtar,
    usage_from_stats,
)
from fogmesh.agent.runtime.errors import (
    InstanceExists,
    InstanceNotFound,
    PrepareFailed,
    translate_errors,
)
from fogmesh.agent.runtime.tarutil import one_file_tar, read_manifest, write_manifest
from fogmesh.protocol.workload import RuntimeKind, WorkloadSpec

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
        docker: aiodocker.Docker | None = None,
        url: str | None = None,
        always_pull: bool = False,
        extra_labels: Mapping[str, str] | None = None,
        pull_timeout: float = 900.0,
        env_defaults: Mapping[str, str] | None = None,
        host_network: bool = False,
    ) -> None:
        self.node = node
        # Variables every workload gets under its own env (e.g. the broker it should use).
        self._env_defaults = dict(env_defaults or {})
        # Host networking lets workloads reach a broker that listens on loopback only; it
        # gives up the per-tenant network, so it is for single-tenant or trusted fleets.
        self._host_network = host_network
        self.prefix = f"fm-{docker_safe(node)}-" if prefix is None else prefix
        self._docker = docker if docker is not None else aiodocker.Docker(url=url)
        self._always_pull = always_pull
        self._extra_labels = dict(extra_labels or {})
        self._pull_timeout = pull_timeout
        self._networks = TenantNetworks(self._docker, self._extra_labels)

    @property
    def kind(self) -> RuntimeKind:
        """Always :attr:`RuntimeKind.DOCKER`."""
        return RuntimeKind.DOCKER

    # -- lookup -------------------------------------------------------------------------------

    def _filters(self, **labels: str) -> str:
        # The extra labels are part of the identity: two fleets (or test runs) on one engine
        # with the same node names never see, adopt or remove each other's containers.
        wanted = [
            f"{LABEL_NODE}={self.node}",
            *(f"{k}={v}" for k, v in self._extra_labels.items()),
            *(f"{k}={v}" for k, v in labels.items()),
        ]
        return json.dumps({"label": wanted})

    async def _find(self, name: str) -> DockerContainer | None:
        found = await self._docker.containers.list(
            all=True, filters=self._filters(**{LABEL_WORKLOAD: name})
        )
        return found[0] if found else None

    async def _get(self, name: str) -> DockerContainer:
        container = await self._find(name)
        if container is None:
            raise InstanceNotFound(f"no container for workload {name!r} on node {self.node!r}")
        return container

    async def _inspect(self, name: str, container: DockerContainer) -> InstanceStatus:
        return status_from_inspect(name, await container.show())

    # -- Runtime ------------------------------------------------------------------------------

    async def prepare(self, spec: WorkloadSpec) -> None:
        """Pull ``spec.image`` unless present (or always, with ``always_pull``)."""
        image = str(spec.image)
        with translate_errors(f"pull {image}", failure=PrepareFailed):
            try:
                await self._docker.images.inspect(image)
                present = True
            except DockerError as exc:
                if exc.status != 404:
                    raise
                present = False
            if present and not self._always_pull:
                return
            try:
                await self._docker.images.pull(image, timeout=self._pull_timeout)
            except DockerError as exc:
                if not present:
                    raise
                log.warning("pull of %s failed (%s); using the local image", image, exc)

    async def create(self, spec: WorkloadSpec) -> InstanceStatus:
        """Create the container (network and volumes first) with limits, env and labels."""
        with translate_errors(f"create {spec.name}"):
            existing = await self._find(spec.name)
            if existing is not None:
                status = await self._inspect(spec.name, existing)
                if status.spec_hash == spec.spec_hash():
                    return status
                raise InstanceExists(
                    f"workload {spec.name!r} exists with spec {status.spec_hash}; remove it first"
                )
            cname = container_name(spec, self.prefix)
            network = "host" if self._host_network else await self._networks.ensure(spec.tenant)
            mounts = []
            for volume in spec.volumes:
                vname = make_volume_name(cname, volume.name)
                await self._ensure_volume(vname, spec)
                mounts.append({"Type": "volume", "Source": vname, "Target": volume.mount_path})
            labels = {**spec.labels, **self._extra_labels, **workload_labels(spec, self.node)}
            host_config: dict[str, Any] = {
                "RestartPolicy": {"Name": "no"},
                "NetworkMode": network,
                "Mounts": mounts,
            }
            if spec.cpu_limit is not None:
                host_config["NanoCpus"] = int(spec.cpu_limit * 1e9)
            if spec.memory_limit_bytes is not None:
                host_config["Memory"] = spec.memory_limit_bytes
            aliases = sorted({docker_safe(spec.component), docker_safe(spec.name)})
            config: dict[str, Any] = {
                "Image": spec.image,
                "Env": [f"{k}={v}" for k, v in self._env(spec).items()],
                "Labels": labels,
                "HostConfig": host_config,
            }
            if not self._host_network:
                config["NetworkingConfig"] = {"EndpointsConfig": {network: {"Aliases": aliases}}}
            if spec.command:
                config["Cmd"] = list(spec.command)
            try:
                container = await self._docker.containers.create(config, name=cname)
            except DockerError as exc:
                if exc.status == 409:
                    raise InstanceExists(f"create {spec.name}: {exc.message}") from exc
                raise
            return await self._inspect(spec.name, container)

    async def start(self, name: str) -> InstanceStatus:
        """Start the container (a no-op if it runs)."""
        with translate_errors(f"start {name}", missing=InstanceNotFound):
            container = await self._get(name)
            await container.start()
            return await self._inspect(name, container)

    async def stop(self, name: str, timeout: float = 10.0) -> InstanceStatus:
        """``docker stop -t timeout`` (SIGTERM, then SIGKILL). A no-op if absent or stopped."""
        with translate_errors(f"stop {name}"):
            container = await self._find(name)
            if container is None:
                return InstanceStatus(name, InstanceState.ABSENT, RuntimeKind.DOCKER)
            await container.stop(t=max(math.ceil(timeout), 0))
            return await self._inspect(name, container)

    async def remove(self, name: str, *, keep_state: bool = False) -> None:
        """Remove the container (forced), its volumes unless ``keep_state``, and the tenant's
        network if nothing else is attached to it."""
        with translate_errors(f"remove {name}"):
            container = await self._find(name)
            tenant = None
            if container is not None:
                info = await container.show()
                tenant = ((info.get("Config") or {}).get("Labels") or {}).get(LABEL_TENANT)
                with contextlib.suppress(DockerError):
                    await container.delete(force=True)
            if not keep_state:
                found = await self._docker._query_json(
                    "volumes", params={"filters": self._filters(**{LABEL_WORKLOAD: name})}
                )
                for volume in found.get("Volumes") or []:
                    await self._docker._query_json(f"volumes/{volume['Name']}", method="DELETE")
            if tenant:
                await self._networks.drop_if_unused(tenant)

    async def status(self, name: str) -> InstanceStatus:
        """The container's status, or ``ABSENT``."""
        with translate_errors(f"status {name}"):
            container = await self._find(name)
            if container is None:
                return InstanceStatus(name, InstanceState.ABSENT, RuntimeKind.DOCKER)
            try:
                return await self._inspect(name, container)
            except DockerError as exc:  # removed between list and inspect
                if exc.status != 404:
                    raise
                return InstanceStatus(name, InstanceState.ABSENT, RuntimeKind.DOCKER)

    async def list_instances(self) -> list[InstanceStatus]:
        """Every container labelled with this node."""
        with translate_errors("list containers"):
            found = await self._docker.containers.list(all=True, filters=self._filters())
            result = []
            for container in found:
                labels: Mapping[str, str] = container["Labels"] or {}
                with contextlib.suppress(DockerError):
                    result.append(await self._inspect(labels.get(LABEL_WORKLOAD, ""), container))
            return sorted(result, key=lambda s: s.name)

    async def logs(self, name: str, tail: int = 100, since: float | None = None) -> list[str]:
        """The container's last ``tail`` log lines (stdout and stderr), after ``since``."""
        if tail <= 0:
            return []
        with translate_errors(f"logs {name}", missing=InstanceNotFound):
            container = await self._get(name)
            params: dict[str, Any] = {"tail": str(tail)}
            if since is not None:
                params["since"] = str(int(since))
            chunks = await container.log(stdout=True, stderr=True, **params)
            return "".join(chunks).splitlines()[-tail:]

    async def put_file(self, name: str, path: str, data: bytes, mode: int = 0o644) -> None:
        """Put ``data`` at absolute ``path`` in the container (``PUT /archive``); missing parent
        directories are created by Docker (mode 0755)."""
        archive = one_file_tar(path, data, mode)
        with translate_errors(f"put_file {name}:{path}", missing=InstanceNotFound):
            container = await self._get(name)
            await self._put_archive(container, "/", archive)

    async def snapshot(self, name: str) -> bytes:
        """A tar of the container's volumes' content (or, without volumes, of its changed
        files); see :mod:`fogmesh.agent.runtime.docker_state`."""
        with translate_errors(f"snapshot {name}", missing=InstanceNotFound):
            container = await self._get(name)
            info = await container.show()
            mounts = [
                m["Destination"] for m in info.get("Mounts") or [] if m.get("Type") == "volume"
            ]
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as out:
                kind = "volumes" if mounts else "rootfs"
                write_manifest(
                    out, {"runtime": "docker", "workload": name, "kind": kind, "mounts": mounts}
                )
                for index, path in enumerate(mounts):
                    archive = await container.get_archive(path)
                    repack(out, archive, f"mounts/{index}/", strip_first=True)
                if not mounts:
                    await self._snapshot_changes(container, out)
            return buf.getvalue()

    async def restore(self, spec: WorkloadSpec, snapshot: bytes) -> InstanceStatus:
        """Create the container for ``spec`` and load ``snapshot`` into it (not started)."""
        with (
            translate_errors(f"restore {spec.name}"),
            tarfile.open(fileobj=io.BytesIO(snapshot), mode="r") as source,
        ):
            return await self._restore(spec, source)

    async def _restore(self, spec: WorkloadSpec, source: tarfile.TarFile) -> InstanceStatus:
        manifest = read_manifest(source, runtime="docker")
        status = await self.create(spec)
        container = await self._get(spec.name)
        if manifest.get("kind") == "rootfs":
            await self._put_archive(container, "/", subtar(source, "rootfs/"))
        for index, path in enumerate(manifest.get("mounts") or []):
            if path not in {v.mount_path for v in spec.volumes}:
                log.warning("restore %s: no volume at %s in the new spec", spec.name, path)
                continue
            await self._put_archive(container, path, subtar(source, f"mounts/{index}/"))
        return status

    async def usage(self, name: str) -> Usage:
        """CPU and memory from one ``docker stats`` sample; zeros if not running."""
        with translate_errors(f"usage {name}", missing=InstanceNotFound):
            container = await self._get(name)
            if (await self._inspect(name, container)).state is not InstanceState.RUNNING:
                return Usage()
            samples = await container.stats(stream=False)
            return usage_from_stats(samples[0]) if samples else Usage()

    async def close(self) -> None:
        """Close the connection to dockerd; containers keep running."""
        await self._docker.close()

    # -- helpers ------------------------------------------------------------------------------

    def _env(self, spec: WorkloadSpec) -> dict[str, str]:
        return {**self._env_defaults, **workload_env(spec, self.node)}

    async def _ensure_volume(self, name: str, spec: WorkloadSpec) -> None:
        labels = {
            **self._extra_labels,
            LABEL_NODE: self.node,
            LABEL_TENANT: spec.tenant,
            LABEL_APP: spec.app,
            LABEL_COMPONENT: spec.component,
            LABEL_WORKLOAD: spec.name,
        }
        body = json.dumps({"Name": name, "Labels": labels}).encode()
        await self._docker._query_json("volumes/create", method="POST", data=body)

    async def _put_archive(self, container: DockerContainer, path: str, data: bytes) -> None:
        async with self._docker._query(
            f"containers/{container.id}/archive",
            method="PUT",
            data=data,
            headers={"content-type": "application/x-tar"},
            params={"path": path},
        ):
            pass

    async def _snapshot_changes(self, container: DockerContainer, out: tarfile.TarFile) -> None:
        changes = await self._docker._query_json(f"containers/{container.id}/changes") or []
        for change in changes:
            path = str(change.get("Path", ""))
            if change.get("Kind") == 2 or not path or path.startswith(SKIP_CHANGES):
                continue
            archive = await container.get_archive(path)
            # a directory's archive holds its whole tree: keep only its own entry, since every
            # changed file below it is a change of its own
            top = archive.getmembers()[0]
            copy_member(out, archive, top, f"rootfs/{path.lstrip('/')}")
