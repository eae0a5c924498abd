"""Requests by properties: a component asks for ``serial[vendor=0403]`` rather than a name;
the scheduler places it only where a device matches (and none is held by another workload),
and the agent's catalog picks a matching device that is free."""

from __future__ import annotations

from pathlib import Path

import pytest

from fogmesh.agent.devices import DeviceCatalog, DeviceRefused
from fogmesh.protocol.manifest import AppManifest
from fogmesh.protocol.node import DeviceInfo
from fogmesh.scheduler.placement import ClusterView, NodeInfo, PlacedWorkload, Planner, all_wants
from tests.devices.conftest import device_node, make_char_device

FTDI = "serial[vendor=0403,product=6001]"


def _usb_tty(root: Path, tty: str, usb_id: str, vendor: str, product: str) -> None:
    """sysfs as the kernel lays out a USB serial adapter: tty -> interface -> USB device."""
    usb = root / "sys/devices/pci0000:00/usb1" / usb_id
    iface = usb / f"{usb_id}:1.0" / tty
    iface.mkdir(parents=True)
    (usb / "idVendor").write_text(f"{vendor}\n")
    (usb / "idProduct").write_text(f"{product}\n")
    (root / "sys/class/tty" / tty).mkdir(parents=True)
    (root / "sys/class/tty" / tty / "device").symlink_to(iface)
    make_char_device(root / "dev" / tty)


def test_catalog_picks_a_free_matching_device(device_root: Path) -> None:
    """Of three ports the FTDI request matches the two FTDI ones, the first free by name;
    a vendor no port has, a malformed selector and a taken last match are refused."""
    _usb_tty(device_root, "ttyUSB0", "1-1", "0403", "6001")
    _usb_tty(device_root, "ttyUSB1", "1-2", "10c4", "ea60")
    _usb_tty(device_root, "ttyUSB2", "1-3", "0403", "6001")
    catalog = DeviceCatalog(root=device_root)
    assert catalog.resolve(FTDI).name == "serial:ttyUSB0"
    assert catalog.resolve("serial[vendor=10c4]").name == "serial:ttyUSB1"
    assert catalog.resolve(FTDI, taken=["serial:ttyUSB0"]).name == "serial:ttyUSB2"
    with pytest.raises(DeviceRefused, match="held"):
        catalog.resolve(FTDI, taken=["serial:ttyUSB0", "serial:ttyUSB2"])
    for request in ("serial[vendor=dead]", "video[vendor=0403]", "serial[vendor]"):
        with pytest.raises(DeviceRefused):
            catalog.resolve(request)


def _node(node_id: str, vendor: str, *, held: bool = False) -> NodeInfo:
    info = DeviceInfo(
        name="serial:ttyUSB0",
        path="/dev/ttyUSB0",
        kind="serial",
        properties={"vendor": vendor, "product": "6001"},
    )
    holders = [PlacedWorkload("old-c-0", "t0", "old", "c", devices=(info.name,))] if held else []
    return device_node(node_id, info, holders)


def _manifest() -> AppManifest:
    return AppManifest.model_validate(
        {
            "name": "app",
            "components": [{"name": "reader", "image": "img"}],
            "placement": {"devices": [FTDI]},
        }
    )


def _place(*nodes: NodeInfo) -> dict[str, str]:
    result = Planner(ClusterView(list(nodes)), _manifest(), "t").place(all_wants(_manifest()))
    return dict(result.placements)


def test_planner_matches_properties_and_holds() -> None:
    """The request lands on the node whose port has the vendor (nodes differing only in a
    property are told apart), not on one where another workload holds the matching port."""
    assert _place(_node("a", "10c4"), _node("b", "0403")) == {"app-reader-0": "b"}
    assert _place(_node("a", "0403", held=True), _node("b", "0403")) == {"app-reader-0": "b"}
    lacking = Planner(ClusterView([_node("a", "10c4")]), _manifest(), "t")
    failed = lacking.place(all_wants(_manifest()))
    assert not failed.ok
    assert failed.failures[0].reason_counts == {"devices": 1}
