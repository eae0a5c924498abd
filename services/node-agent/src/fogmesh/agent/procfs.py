"""The node's figures as Linux gives them in ``/proc`` and through a socket: memory, CPU time,
link addresses (the agent is Linux-only).

The usage sampler runs every heartbeat tick of an idle agent; psutil would cost it 1.0 MB
resident (its named tuples and platform module, docs/agent.md "Memory") for these three reads.
Each figure is the one psutil gives on Linux (``virtual_memory().total`` and ``.available``,
``cpu_percent(interval=None)``, the ``AF_LINK`` addresses of ``net_if_addrs()``);
``tests/agent/test_procfs.py`` compares them on the machine it runs on. The native runtime's
process statistics still come from psutil, imported when a native workload is looked at.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from pathlib import Path

__all__ = ["CpuMeter", "link_addresses", "memory"]

PROC = Path("/proc")
_SIOCGIFHWADDR = 0x8927  # linux/sockios.h: an interface's hardware address (struct ifreq)
_IFNAMSIZ = 16  # struct ifreq: the name (with its NUL), then the sockaddr: family, address
_NO_LINK_ADDRESS = {0xFFFE, 0xFFFF}  # ARPHRD_NONE (tun, wireguard), ARPHRD_VOID


def memory(proc: Path = PROC) -> tuple[int, int]:
    """Total and available memory in bytes (``MemTotal``, ``MemAvailable``; a kernel older than
    3.14 has no ``MemAvailable``: free + buffers + cached there)."""
    fields: dict[str, int] = {}
    with (proc / "meminfo").open("rb") as fh:
        for line in fh:
            key, _, rest = line.partition(b":")
            parts = rest.split()
            if parts:
                fields[key.decode()] = int(parts[0]) * 1024
    total = fields.get("MemTotal", 0)
    available = fields.get("MemAvailable")
    if available is None:
        available = sum(fields.get(k, 0) for k in ("MemFree", "Buffers", "Cached"))
    return total, min(available, total)


def _cpu_ticks(proc: Path) -> tuple[int, int]:
    """Busy and total ticks of all CPUs since boot, from the ``cpu`` line of ``/proc/stat``:
    guest time is already in user and nice, idle and iowait are not busy."""
    with (proc / "stat").open("rb") as fh:
        values = [int(v) for v in fh.readline().split()[1:9]]
    values += [0] * (8 - len(values))  # user nice system idle iowait irq softirq steal
    total, idle, iowait = sum(values), values[3], values[4]
    return total - idle - iowait, total


class CpuMeter:
    """The node's CPU use in percent between two calls of :meth:`percent` (the first call:
    since the meter was made)."""

    def __init__(self, proc: Path = PROC) -> None:
        self.proc = proc
        self._last = _cpu_ticks(proc)

    def percent(self) -> float:
        """Busy share of all CPUs since the last call, 0-100, one decimal."""
        busy, total = _cpu_ticks(self.proc)
        last_busy, last_total = self._last
        self._last = (busy, total)
        elapsed = total - last_total
        if elapsed <= 0:
            return 0.0
        return round(min(max((busy - last_busy) * 100.0 / elapsed, 0.0), 100.0), 1)


def link_addresses() -> dict[str, str]:
    """Each network interface's link-layer address (``aa:bb:..``), by name, in this process's
    network namespace; interfaces without one are left out.

    The names come from ``if_nameindex`` and the addresses from ``SIOCGIFHWADDR``, both asked of
    the kernel through a socket, so they are this namespace's (``/sys/class/net`` shows the
    namespace its sysfs was mounted in: under ``unshare -n`` the host's interfaces).
    """
    out: dict[str, str] = {}
    try:
        names = sorted(name for _index, name in socket.if_nameindex())
    except OSError:
        return out
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in names:
            request = struct.pack("256s", name.encode()[: _IFNAMSIZ - 1])
            try:
                answer = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, request)
            except OSError:
                continue
            family = struct.unpack_from("=H", answer, _IFNAMSIZ)[0]
            if family in _NO_LINK_ADDRESS:
                continue
            out[name] = ":".join(f"{b:02x}" for b in answer[_IFNAMSIZ + 2 : _IFNAMSIZ + 8])
    return out
