"""The agent's devices while it runs (docs/devices.md): a device that came or went is news for
the registry, so the hello is sent again with new facts, and each workload given a device that
went away gets a ``device-lost`` event; the shared reader of the config's ``device_streams`` is
imported only by an agent that has some.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from fogmesh.agent.devices import DeviceCatalog
from fogmesh.agent.reconcile import Reconciler
from fogmesh.agent.reconcile_report import EventSink
from fogmesh.bus import Bus
from fogmesh.protocol import DeviceInfo, NodeChannel, NodeFacts, NodeHello, WorkloadSpec, topics

if TYPE_CHECKING:
    from fogmesh.agent.device_reader import DeviceReader

__all__ = ["DeviceWatch"]

log = structlog.get_logger("fogmesh.agent")


class DeviceWatch:
    """Part of :class:`~fogmesh.agent.service.Agent`: tells of devices that came or went and
    reads the device streams."""

    node: str  # set by Agent.__init__
    boot_id: str
    client_id: str
    devices: DeviceCatalog
    reconciler: Reconciler | None
    _facts: NodeFacts | None
    facts: Callable[[], NodeFacts]  # methods of Agent
    _emit: EventSink

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
