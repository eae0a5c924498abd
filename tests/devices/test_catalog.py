"""Discovery: the catalog finds device nodes and their USB properties under a root the test
makes, names them stably, sees hot-plug on the next scan, and resolves only what it knows."""

from __future__ import annotations

from pathlib import Path

import pytest

from fogmesh.agent.devices import DeviceCatalog, DeviceRefused
from tests.devices.conftest import make_char_device


def _usb_serial(root: Path) -> None:
    """sysfs as the kernel lays out an FTDI adapter: tty -> interface -> USB device."""
    usb = root / "sys/devices/pci0000:00/usb1/1-1"
    iface = usb / "1-1:1.0/ttyUSB0"
    iface.mkdir(parents=True)
    (usb / "idVendor").write_text("0403\n")
    (usb / "idProduct").write_text("6001\n")
    (usb / "busnum").write_text("1\n")
    (usb / "devnum").write_text("2\n")
    (root / "sys/class/tty/ttyUSB0").mkdir(parents=True)
    (root / "sys/class/tty/ttyUSB0/device").symlink_to(iface)
    (root / "sys/bus/usb/devices").mkdir(parents=True)
    (root / "sys/bus/usb/devices/1-1").symlink_to(usb)
    (root / "sys/bus/usb/devices/1-1:1.0").symlink_to(usb / "1-1:1.0")


def test_finds_devices_by_kind_with_usb_properties(device_root: Path) -> None:
    """Serial, video, GPIO, GPU and USB devices get stable names; a serial port behind USB
    carries the vendor and product of its USB device; plain files are not devices."""
    for node in ("ttyUSB0", "video0", "gpiochip0", "nvidia0", "dri/renderD128", "bus/usb/001/002"):
        make_char_device(device_root / "dev" / node)
    (device_root / "dev/ttyACM9").write_text("not a device")
    _usb_serial(device_root)
    infos = {i.name: i for i in DeviceCatalog(root=device_root).scan()}
    assert sorted(infos) == [
        "gpio:gpiochip0",
        "gpu:nvidia0",
        "gpu:renderD128",
        "serial:ttyUSB0",
        "usb:1-1",
        "video:video0",
    ]
    serial = infos["serial:ttyUSB0"]
    assert serial.kind == "serial"
    assert serial.path == str(device_root / "dev/ttyUSB0")
    assert serial.properties["vendor"] == "0403"
    assert serial.properties["product"] == "6001"
    assert infos["usb:1-1"].path == str(device_root / "dev/bus/usb/001/002")


def test_hot_plug_config_and_shared(device_root: Path) -> None:
    """A node made after the first scan shows in the next one and one removed leaves; a
    configured path is reported by its path; the operator's shared list marks a device."""
    extra = make_char_device(device_root / "gpio17")
    catalog = DeviceCatalog(
        root=device_root, configured=(str(extra),), shared=frozenset({"video:video0"})
    )
    names, _ = catalog.facts()
    assert names == [str(extra)]
    make_char_device(device_root / "dev/video0")
    names, infos = catalog.facts()
    assert "video:video0" in names
    assert str(device_root / "dev/video0") in names  # placement may name the path too
    assert [i.shared for i in infos if i.name == "video:video0"] == [True]
    (device_root / "dev/video0").unlink()
    assert "video:video0" not in catalog.facts()[0]


def test_resolves_only_known_devices(device_root: Path) -> None:
    """A request by name or path of a device present resolves; anything else (a host disk
    above all) is refused."""
    node = make_char_device(device_root / "dev/ttyACM0")
    catalog = DeviceCatalog(root=device_root)
    assert catalog.resolve("serial:ttyACM0").path == str(node)
    assert catalog.resolve(str(node)).name == "serial:ttyACM0"
    for request in ("/dev/sda", "serial:ttyUSB0", "/etc/shadow"):
        with pytest.raises(DeviceRefused):
            catalog.resolve(request)
