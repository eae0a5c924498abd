"""The node's devices: found by scanning ``/dev`` and sysfs, and listed in the config.

Each device has a stable name ``{kind}:{node}`` (``serial:ttyUSB0``, ``video:video0``,
``gpio:gpiochip0``, ``gpu:nvidia0``, ``gpu:renderD128``, ``usb:1-1.2``) and the properties
sysfs gives (``vendor`` / ``product`` of the USB device behind it). Paths in the config's
``gpio`` and ``devices`` are reported too, by their path as their name. The scan runs under a
root directory (``device_root``, default ``/``) so tests control what the agent sees.

:meth:`DeviceCatalog.resolve` is the only way a runtime turns a workload's device request into
a host path: a request the catalog does not know is refused (a manifest cannot ask for
``/dev/sda``). :func:`grant` / :func:`revoke` give one user read-write access to a device node
with a POSIX ACL entry (nothing else changes: the owner, group and mode stay).
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fogmesh.agent.runtime.errors import RuntimeFailure
from fogmesh.protocol.node import DeviceInfo

__all__ = [
    "DeviceCatalog",
    "DeviceRefused",
    "container_path",
    "device_rule",
    "grant",
    "on_devpts",
    "revoke",
]

# (kind, glob under {root}/dev); ttyS* is left out: every PC has 32 of them, mostly unwired.
_PATTERNS = (
    ("serial", "ttyUSB*"),
    ("serial", "ttyACM*"),
    ("serial", "ttyAMA*"),
    ("video", "video*"),
    ("gpio", "gpiochip*"),
    ("gpu", "nvidia[0-9]*"),
    ("gpu", "dri/renderD*"),
)


class DeviceRefused(RuntimeFailure):
    """A workload asked for a device this node does not have (or does not offer)."""


@dataclass(frozen=True, slots=True)
class DeviceCatalog:
    """What devices the node has, scanned afresh on each call (hot-plug needs no restart).

    ``configured`` are extra paths from the config; ``shared`` the names or paths the operator
    lets several workloads use at once; ``streamed`` those the agent's shared reader reads
    (:mod:`fogmesh.agent.device_reader`): shared too, and never given to a workload itself.
    """

    root: Path = Path("/")
    configured: tuple[str, ...] = ()
    shared: frozenset[str] = frozenset()
    streamed: frozenset[str] = frozenset()

    def streams(self, info: DeviceInfo) -> bool:
        """Whether the shared reader reads ``info`` (its holders get readings, not the node)."""
        return bool({info.name, info.path} & self.streamed)

    def given(self, requests: Iterable[str]) -> list[DeviceInfo]:
        """The devices a workload's ``requests`` resolve to that it is given itself (streamed
        ones left out); :class:`DeviceRefused` for a request the node does not offer."""
        return [info for info in map(self.resolve, requests) if not self.streams(info)]

    def scan(self) -> list[DeviceInfo]:
        """Every device present now, sorted by name."""
        found: dict[str, DeviceInfo] = {}
        dev = self.root / "dev"
        for kind, pattern in _PATTERNS:
            for path in sorted(dev.glob(pattern)):
                if _is_device(path):
                    name = f"{kind}:{path.name}"
                    found[name] = self._info(name, path, kind, self._tty_props(path.name))
        for usb in sorted((self.root / "sys/bus/usb/devices").glob("*")):
            props = _usb_props(usb)
            if props and ":" not in usb.name:  # interfaces (1-1:1.0) are not devices
                name = f"usb:{usb.name}"
                node = _usb_node(dev, usb)
                found[name] = self._info(name, node, "usb", props)
        for raw in self.configured:
            path = Path(raw)
            if path.exists():
                found[raw] = self._info(raw, path, "device", {})
        return [found[name] for name in sorted(found)]

    def facts(self) -> tuple[list[str], list[DeviceInfo]]:
        """(names and paths, for placement to match; each device in full) for the facts."""
        infos = self.scan()
        return sorted({i.name for i in infos} | {i.path for i in infos}), infos

    def resolve(self, request: str, taken: Iterable[str] = ()) -> DeviceInfo:
        """The device a request names (by name, host path, or kind and properties such as
        ``serial[vendor=0403]``); :class:`DeviceRefused` if none. Of several devices matching
        by properties the first by name not in ``taken`` (names others hold) is picked, so
        the same request gives the same device while the node's devices stay the same."""
        matched = [info for info in self.scan() if info.answers(request)]
        busy = set(taken)
        free = [info for info in matched if info.name not in busy or info.shared]
        if free:
            return free[0]
        if matched:
            raise DeviceRefused(f"every device matching {request!r} is held by another workload")
        raise DeviceRefused(f"this node has no device {request!r}")

    def _info(self, name: str, path: Path, kind: str, props: dict[str, str]) -> DeviceInfo:
        shown = str(path)
        return DeviceInfo(
            name=name,
            path=shown,
            kind=kind,
            properties=props,
            shared=bool({name, shown} & (self.shared | self.streamed)),
        )

    def _tty_props(self, node: str) -> dict[str, str]:
        link = self.root / "sys/class/tty" / node / "device"
        if not link.exists():
            return {}
        here = link.resolve()
        top = (self.root / "sys").resolve()
        while here != top and top in here.parents:
            props = _usb_props(here)
            if props:
                return props
            here = here.parent
        return {}


def container_path(info: DeviceInfo) -> str:
    """Where the device appears inside a container: ``/dev/{its node's name}``."""
    return f"/dev/{Path(info.name.partition(':')[2] or info.path).name}"


def device_rule(info: DeviceInfo) -> str:
    """The cgroup rule letting a container use the device: ``c {major}:{minor} rwm``."""
    st = Path(info.path).stat()
    kind = "b" if stat.S_ISBLK(st.st_mode) else "c"
    return f"{kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} rwm"


def on_devpts(info: DeviceInfo) -> bool:
    """Whether the node is a pseudo-terminal (on devpts): the tty layer opens a pty only
    through its devpts inode, so a container gets it bind-mounted, not made anew."""
    return Path(info.path).resolve().parent == Path("/dev/pts")


def _is_device(path: Path) -> bool:
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode
        return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
    return False


def _usb_props(sysdir: Path) -> dict[str, str]:
    props = {}
    for key, file in (("vendor", "idVendor"), ("product", "idProduct"), ("serial", "serial")):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            props[key] = (sysdir / file).read_text().strip()[:64]
    return props if "vendor" in props else {}


def _usb_node(dev: Path, usb: Path) -> Path:
    # /dev/bus/usb/{bus:03}/{dev:03} is the node libusb opens
    try:
        bus = int((usb / "busnum").read_text())
        num = int((usb / "devnum").read_text())
    except (OSError, ValueError):
        return usb
    return dev / "bus/usb" / f"{bus:03d}" / f"{num:03d}"


# -- access for one user: a POSIX ACL entry (system.posix_acl_access, version 2) -------------

_ACL = "system.posix_acl_access"
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF
_RW = 6


def _read_acl(path: Path) -> list[tuple[int, int, int]]:
    try:
        raw = os.getxattr(path, _ACL)
    except OSError:
        mode = path.stat().st_mode
        return [
            (_USER_OBJ, (mode >> 6) & 7, _NO_ID),
            (_GROUP_OBJ, (mode >> 3) & 7, _NO_ID),
            (_OTHER, mode & 7, _NO_ID),
        ]
    return [struct.unpack_from("<HHI", raw, 4 + 8 * i) for i in range((len(raw) - 4) // 8)]


def _write_acl(path: Path, entries: Iterable[tuple[int, int, int]]) -> None:
    rows = list(entries)
    named = [e for e in rows if e[0] in (_USER, _GROUP)]
    rows = [e for e in rows if e[0] != _MASK]
    if named:  # the mask bounds named entries and the owning group: let them all through
        groups = [perm for tag, perm, _ in rows if tag in (_USER, _GROUP, _GROUP_OBJ)]
        mask = 0
        for perm in groups:
            mask |= perm
        rows.append((_MASK, mask, _NO_ID))
    rows.sort(key=lambda e: (e[0], e[2]))
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in rows)
    os.setxattr(path, _ACL, blob)


def grant(path: str, uid: int) -> None:
    """Let user ``uid`` read and write the device node ``path`` (an ACL entry of its own)."""
    target = Path(path).resolve()
    rows = [e for e in _read_acl(target) if not (e[0] == _USER and e[2] == uid)]
    _write_acl(target, [*rows, (_USER, _RW, uid)])


def revoke(path: str, uid: int) -> None:
    """Take back what :func:`grant` gave ``uid`` (a no-op if the node is gone)."""
    target = Path(path).resolve()
    with contextlib.suppress(FileNotFoundError):
        rows = _read_acl(target)
        if any(e[0] == _USER and e[2] == uid for e in rows):
            _write_acl(target, [e for e in rows if not (e[0] == _USER and e[2] == uid)])
