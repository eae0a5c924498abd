"""The agent's runtimes: opened at start-up as the config lists them (an engine that is absent
or refused is recorded as missing, with why, and never stops the agent) and closed when it
stops. Docker's and the native runtime's modules are imported only when configured
(docs/agent.md, "Memory").
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog

from fogmesh.agent.artefact_fetch import SiteFetcher
from fogmesh.agent.config import AgentConfig
from fogmesh.agent.devices import DeviceCatalog
from fogmesh.agent.runtime.base import Runtime
from fogmesh.protocol import RuntimeKind

__all__ = ["RuntimeSetup"]

log = structlog.get_logger("fogmesh.agent")


class RuntimeSetup:
    """Part of :class:`~fogmesh.agent.service.Agent`: opens and closes its runtimes."""

    config: AgentConfig  # set by Agent.__init__
    node: str
    state_dir: Path
    runtimes: dict[RuntimeKind, Runtime]
    missing: dict[RuntimeKind, str]
    devices: DeviceCatalog
    fetcher: SiteFetcher

    async def _open_runtimes(self) -> None:
        for kind in self.config.runtimes:
            try:
                if kind is RuntimeKind.DOCKER:
                    self.runtimes[kind] = await self._open_docker()
                else:
                    from fogmesh.agent.runtime.native import DEFAULT_ENV, NativeRuntime

                    native = NativeRuntime(
                        self.state_dir / "native",
                        self.node,
                        base_env={**DEFAULT_ENV, **self.config.workload_env},
                        isolation=self.config.native_isolation,
                        cgroup_parent=self.config.native_cgroup_parent,
                        devices=self.devices,
                    )
                    refused = native.access.refusal()
                    if refused:  # not offered in the hello; native workloads fail with why
                        raise RuntimeError(refused)  # noqa: TRY301
                    native.fetcher = self.fetcher
                    self.runtimes[kind] = native
            except Exception as exc:  # noqa: BLE001 -- an absent engine must not stop the agent
                self.missing[kind] = f"{type(exc).__name__}: {exc}"
                log.warning("runtime not available", runtime=kind.value, error=str(exc))

    async def _open_docker(self) -> Runtime:
        from fogmesh.agent.runtime.docker import DockerRuntime
        from fogmesh.agent.runtime.engine import Engine

        docker = Engine(self.config.docker_url)
        try:
            async with asyncio.timeout(5):
                await docker.version()
        except Exception:
            await docker.close()
            raise
        runtime = DockerRuntime(
            self.node,
            prefix=self.config.container_prefix,
            engine=docker,
            extra_labels=self.config.extra_labels,
            env_defaults=self.config.workload_env,
            host_network=self.config.docker_host_network,
            devices=self.devices,
        )
        runtime.fetcher = self.fetcher
        return runtime

    async def _close_runtimes(self) -> None:
        for runtime in self.runtimes.values():
            with contextlib.suppress(Exception):
                await runtime.close()
        log.info("agent stopped", node=self.node)
