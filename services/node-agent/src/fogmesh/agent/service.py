"""The node agent process: one :class:`asyncio.TaskGroup` owning the bus, the reconcile loop,
the heartbeat loop and the publishers of actual state and events.

Start-up order: desired state from disk, runtimes, first reconcile pass (no broker needed),
then the bus connects in the background. After every (re)connect the agent publishes ``hello``
and ``state: online`` (both retained) and its ``actual`` state; the broker publishes the last
will (``state: offline``) if the session dies; a clean shutdown publishes ``offline`` itself.
Workloads keep running when the agent stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING

import structlog
from pydantic import ValidationError

from fogmesh.agent.artefact_fetch import SiteFetcher
from fogmesh.agent.blob_gc import blob_collector
from fogmesh.agent.commands import CommandHandler
from fogmesh.agent.config import AgentConfig
from fogmesh.agent.facts import default_node_id, device_catalog, gather_facts, sample_usage
from fogmesh.agent.heartbeat import BeatPolicy
from fogmesh.agent.reconcile import Reconciler
from fogmesh.agent.runtime.base import InstanceState, Runtime
from fogmesh.agent.runtime.errors import RuntimeFailure
from fogmesh.agent.store import DesiredStore
from fogmesh.agent.trouble import TroubleWatch
from fogmesh.bus import Bus, BusConfig, MessageContext, RawMessage, Will
from fogmesh.protocol import (
    DesiredState,
    DeviceInfo,
    Heartbeat,
    NodeChannel,
    NodeFacts,
    NodeHello,
    NodeLiveness,
    NodeStateMessage,
    RuntimeKind,
    Usage,
    WorkloadSpec,
    error_info_from_validation,
    topics,
)

if TYPE_CHECKING:
    from fogmesh.agent.device_reader import DeviceReader
    from fogmesh.protocol.events import Event

__all__ = ["Agent"]

log = structlog.get_logger("fogmesh.agent")


class Agent:
    """One node agent."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.node = config.node_id or default_node_id()
        self.boot_id = uuid.uuid4().hex
        self.state_dir = config.state_dir
        self.store = DesiredStore(self.state_dir, self.node)
        self.runtimes: dict[RuntimeKind, Runtime] = {}
        self.missing: dict[RuntimeKind, str] = {}
        self.reconciler: Reconciler | None = None
        self.bus: Bus | None = None
        self.client_id = config.broker.client_id or f"{self.node}-agent"[:128]
        self._events: deque[tuple[str, Event]] = deque(maxlen=1000)
        self._events_ready = asyncio.Event()
        self._seq = 0
        self.beats = BeatPolicy(
            every_s=config.heartbeat_interval_s,
            max_s=config.heartbeat_max_interval_s,
            deadband_percent=config.heartbeat_deadband_percent,
            on_change=config.heartbeat_on_change,
            usage_min_s=config.heartbeat_usage_wait_s,
        )
        """When heartbeats go out (:mod:`fogmesh.agent.heartbeat`)."""
        self._facts: NodeFacts | None = None
        self.devices = device_catalog(config)
        self.fetcher = SiteFetcher(self.state_dir, self.node, config.site, lambda: self.bus)
        """Artefacts and images by ref, from the site's cache (``docs/artefacts.md``)."""
        self.ready = asyncio.Event()
        """Set once the first reconcile pass is done and the loops run."""

    # -- setup --------------------------------------------------------------------------------

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

    def facts(self) -> NodeFacts:
        """The node's facts (cached after the first call; refreshed at each reconnect)."""
        if self._facts is None:
            self._facts = gather_facts(self.config, [k.value for k in self.runtimes])
        return self._facts

    def usage(self) -> Usage:
        """Node usage now."""
        return sample_usage(self.state_dir)

    def _bus_config(self) -> BusConfig:
        config = self.config.broker.bus_config(self.client_id)
        if (
            self.config.heartbeat_on_change
            and "keepalive" not in self.config.broker.model_fields_set
        ):
            # liveness on the LAN is the session: the site broker fires the will of a silent
            # agent after 1.5 keepalives, 3 sampling intervals (docs/agent.md, "Heartbeats")
            keepalive = max(1, math.ceil(2 * self.config.heartbeat_interval_s))
            config = dataclasses.replace(config, keepalive=keepalive)
        return config

    def _state_message(self, state: NodeLiveness) -> NodeStateMessage:
        return NodeStateMessage(
            node=self.node, state=state, boot_id=self.boot_id, source=self.client_id
        )

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        loaded = self.store.load()
        log.info(
            "agent starting",
            node=self.node,
            state_dir=str(self.state_dir),
            desired_generation=None if loaded is None else loaded.generation,
        )
        await self._open_runtimes()
        self.reconciler = Reconciler(
            self.node,
            self.store,
            self.runtimes,
            missing_runtimes=self.missing,
            stop_timeout=self.config.stop_timeout_s,
            retry_base=self.config.retry_base_s,
            retry_cap=self.config.retry_cap_s,
            emit=self._emit,
        )
        commands = CommandHandler(
            self.node,
            self.reconciler,
            facts=self.facts,
            usage=self.usage,
            allow_operator=self.config.allow_operator_commands,
            stop_timeout=self.config.stop_timeout_s,
        )
        will = Will(
            topics.node(self.node, NodeChannel.STATE), self._state_message(NodeLiveness.OFFLINE)
        )
        bus = Bus(self._bus_config(), will=will)
        self.bus = bus
        bus.subscribe(topics.node(self.node, NodeChannel.DESIRED), RawMessage, self._on_desired)
        commands.register(bus)
        bus.on_connect(self._on_connect)
        try:
            async with bus:
                try:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self.reconciler.run(self.config.reconcile_interval_s))
                        group.create_task(self._actual_loop(bus))
                        group.create_task(self._event_loop(bus))
                        group.create_task(self._heartbeat_loop(bus))
                        group.create_task(self._trouble_watch().run(bus))
                        group.create_task(blob_collector(self).run())
                        if self.config.device_streams:
                            group.create_task(self._device_reader(bus).run())
                        self.ready.set()
                finally:
                    await commands.follows.close()  # log follows end with the agent
                    await self._say_offline(bus)
        finally:
            await self._close_runtimes()

    def _trouble_watch(self) -> TroubleWatch:
        assert self.reconciler is not None
        reconciler = self.reconciler
        return TroubleWatch(
            self.node, self.state_dir, lambda: reconciler.down,
            disk_percent=self.config.trouble_disk_percent,
            repeat_s=self.config.trouble_repeat_s,
            interval_s=self.config.heartbeat_interval_s,
        )  # fmt: skip

    async def _say_offline(self, bus: Bus) -> None:
        """A clean shutdown says offline itself (the will is only for unclean deaths)."""
        if not bus.connected:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await bus.publish(
                    topics.node(self.node, NodeChannel.STATE),
                    self._state_message(NodeLiveness.OFFLINE),
                    retain=True,
                )

    async def _close_runtimes(self) -> None:
        for runtime in self.runtimes.values():
            with contextlib.suppress(Exception):
                await runtime.close()
        log.info("agent stopped", node=self.node)

    async def _on_connect(self, bus: Bus) -> None:
        self._facts = None
        facts = await asyncio.to_thread(self.facts)
        hello = NodeHello(node=self.node, facts=facts, boot_id=self.boot_id, source=self.client_id)
        await bus.publish(topics.node(self.node, NodeChannel.HELLO), hello, retain=True)
        await bus.publish(
            topics.node(self.node, NodeChannel.STATE),
            self._state_message(NodeLiveness.ONLINE),
            retain=True,
        )
        if self.reconciler is not None:
            await self._publish_actual(bus)
        log.info("connected to the bus; hello sent", node=self.node, connects=bus.connects)

    async def _publish_actual(self, bus: Bus) -> None:
        assert self.reconciler is not None
        self.reconciler.changed.clear()
        actual = self.reconciler.actual(source=self.client_id)
        await bus.publish(topics.node(self.node, NodeChannel.ACTUAL), actual, retain=True)

    async def _actual_loop(self, bus: Bus) -> None:
        assert self.reconciler is not None
        while True:
            await self.reconciler.changed.wait()
            try:
                await self._publish_actual(bus)
            except Exception:
                log.exception("publishing actual state failed")
                await asyncio.sleep(1)

    def _emit(self, tenant: str | None, event: Event) -> None:
        kind = event.kind.value
        topic = topics.tenant_event(tenant, kind) if tenant else topics.fleet_event(kind)
        self._events.append((topic, event.model_copy(update={"source": self.client_id})))
        self._events_ready.set()

    async def _event_loop(self, bus: Bus) -> None:
        while True:
            await self._events_ready.wait()
            self._events_ready.clear()
            while self._events:
                topic, event = self._events.popleft()
                try:
                    await bus.publish(topic, event)
                except Exception:
                    log.exception("publishing an event failed", topic=topic)

    async def _heartbeat_loop(self, bus: Bus) -> None:
        """Sample every ``heartbeat_interval_s``; send when :class:`BeatPolicy` says there is
        news, or the longest wait is over (docs/agent.md, "Heartbeats")."""
        assert self.reconciler is not None
        interval = self.config.heartbeat_interval_s
        connects = -1
        while True:
            await asyncio.sleep(interval)
            if not bus.connected:
                continue  # a heartbeat is only news while it is fresh: never queue them
            try:
                if bus.connects != connects:
                    connects = bus.connects
                    self.beats.reset()  # a new session: the first beat carries everything
                await self._rehello_on_device_change(bus)
                beat = await self._heartbeat(interval)
                if beat is None:
                    continue
                payload = beat.model_dump_json(exclude_defaults=True).encode()
                topic = topics.node(self.node, NodeChannel.HEARTBEAT)
                await bus.publish_raw(topic, payload, qos=0, queue=False)
            except Exception:
                log.exception("heartbeat failed")

    async def _rehello_on_device_change(self, bus: Bus) -> None:
        """Hot-plug: a device that came or went since the hello is news for the registry
        (and so the scheduler) within a heartbeat: the hello is sent again with new facts."""
        devices, infos = await asyncio.to_thread(self.devices.facts)
        facts = self.facts()
        if devices == facts.devices and infos == facts.device_info:
            return
        self._facts = facts.model_copy(update={"devices": devices, "device_info": infos})
        present = {i.name for i in infos}
        self._tell_holders([i for i in facts.device_info if i.name not in present])
        hello = NodeHello(
            node=self.node, facts=self._facts, boot_id=self.boot_id, source=self.client_id
        )
        await bus.publish(topics.node(self.node, NodeChannel.HELLO), hello, retain=True)
        log.info("devices changed; hello sent again", node=self.node, devices=devices)

    def _device_reader(self, bus: Bus) -> DeviceReader:
        """The shared reader of the config's ``device_streams`` (docs/devices.md), imported
        only by an agent that has some."""
        from fogmesh.agent.device_reader import DeviceReader

        def holders() -> list[WorkloadSpec]:
            tracked = self.reconciler.tracked.values() if self.reconciler else ()
            return [t.spec for t in tracked]

        async def publish(topic: str, payload: bytes) -> None:
            await bus.publish_raw(topic, payload, qos=0, queue=False)

        return DeviceReader(self.devices, self.node, holders, publish)

    def _tell_holders(self, gone: list[DeviceInfo]) -> None:
        """A ``device-lost`` event for each workload given a device that went away."""
        if self.reconciler is None or not gone:
            return
        from fogmesh.protocol.events import DeviceLostData, Event, EventKind

        for info in gone:
            for tracked in self.reconciler.tracked.values():
                spec = tracked.spec
                if not any(info.answers(request) for request in spec.devices):
                    continue
                data = DeviceLostData(device=info.name, path=info.path, kind=info.kind)
                message = f"device {info.name} ({info.path}) went away from {spec.name}"
                self._emit(spec.tenant, Event.of(
                    EventKind.DEVICE_LOST, data, tenant=spec.tenant, node=self.node,
                    app=spec.app, workload=spec.name, message=message,
                ))  # fmt: skip
                log.warning("device lost", workload=spec.name, device=info.name)

    async def _heartbeat(self, interval: float) -> Heartbeat | None:
        """This tick's heartbeat, or None when it has no news and is not yet due."""
        assert self.reconciler is not None
        if self.config.workload_usage:
            await self._sample_workloads(timeout=max(interval * 0.8, 0.5))
        usage, statuses, now = self.usage(), self.reconciler.statuses(), time.monotonic()
        decision = self.beats.decide(usage, statuses, now)
        if not decision.send:
            return None
        carried = statuses if decision.workloads else None
        beat = Heartbeat(
            node=self.node,
            seq=self._seq,
            ts=round(time.time(), 3),
            interval_s=self.beats.interval_s,
            usage=_compact(usage),
            workloads=carried,
        )
        self.beats.sent(usage, carried, now)
        self._seq += 1
        return beat

    async def _sample_workloads(self, timeout: float) -> None:
        assert self.reconciler is not None

        async def one(name: str, runtime: Runtime) -> None:
            tracked = self.reconciler.tracked.get(name) if self.reconciler else None
            try:
                use = await runtime.usage(name)
            except RuntimeFailure:
                return
            if tracked is not None:
                tracked.cpu_percent = max(use.cpu_percent, 0.0)
                tracked.memory_bytes = max(use.memory_bytes, 0)

        jobs = []
        for name, tracked in list(self.reconciler.tracked.items()):
            runtime = self.runtimes.get(tracked.spec.runtime)
            if runtime is None:
                continue
            if tracked.machine.phase.value != InstanceState.RUNNING.value:
                tracked.cpu_percent, tracked.memory_bytes = 0.0, 0
                continue
            jobs.append(one(name, runtime))
        if jobs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*jobs)

    # -- desired state ------------------------------------------------------------------------

    async def _on_desired(self, message: RawMessage, ctx: MessageContext) -> None:
        assert self.reconciler is not None
        if not message.payload:
            log.info("desired state cleared on the broker; keeping the one held")
            return
        try:
            desired = DesiredState.model_validate_json(message.payload)
        except ValidationError as exc:
            await self._reject(ctx.bus, error_info_from_validation(exc).message, message.payload)
            return
        if desired.node != self.node:
            reason = f"desired state is for node {desired.node!r}, not {self.node!r}"
            await self._reject(ctx.bus, reason, message.payload)
            return
        try:
            taken = await asyncio.to_thread(self.store.accept, desired)
        except OSError as exc:
            log.exception("cannot write the desired state to disk")
            await self._reject(ctx.bus, f"cannot persist the desired state: {exc}", message.payload)
            return
        if taken:
            log.info(
                "new desired state", generation=desired.generation, workloads=len(desired.workloads)
            )
            self.reconciler.set_rejected("")
            self.reconciler.trigger()

    async def _reject(self, bus: Bus, reason: str, raw: bytes) -> None:
        assert self.reconciler is not None
        log.warning("desired state rejected", reason=reason[:500], size=len(raw))
        from fogmesh.protocol.events import DesiredRejectedData, Event, EventKind

        self.reconciler.set_rejected(reason)
        event = Event.of(
            EventKind.DESIRED_REJECTED,
            DesiredRejectedData(size=len(raw), held_generation=self.store.generation),
            node=self.node,
            message=reason[:4096],
            source=self.client_id,
        )
        await bus.publish(topics.fleet_event(EventKind.DESIRED_REJECTED), event)


def _compact(usage: Usage) -> Usage:
    """Usage as the heartbeat carries it: no more digits than anyone reads."""
    return usage.model_copy(
        update={"cpu_percent": round(usage.cpu_percent, 1), "load1": round(usage.load1, 2)}
    )
