"""The node's figures as Linux gives them in ``/proc`` and ``/sys``: memory, CPU time, link
addresses (the agent is Linux-only).

The usage sampler runs every heartbeat tick of an idle agent; psutil would cost it 1.0 MB
resident (its named tuples and platform module, docs/agent.md "Memory") for these three reads.
Each figure is the one psutil gives on Linux (``virtual_memory().total`` and ``.available``,
``cpu_percent(interval=None)``, the ``AF_LINK`` addresses of ``net_if_addrs()``);
``tests/agent/test_procfs.py`` compares them on the machine it runs on. The native runtime's
process statistics still come from psutil, imported when a native workload is looked at.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CpuMeter", "link_addresses", "memory"]

PROC = Path("/proc")
SYS_NET = Path("/sys/class/net")


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


def link_addresses(net: Path = SYS_NET) -> dict[str, str]:
    """Each network interface's link-layer address (``aa:bb:..``), by name; interfaces without
    one are left out."""
    out: dict[str, str] = {}
    try:
        names = sorted(p.name for p in net.iterdir())
    except OSError:
        return out
    for name in names:
        try:
            address = (net / name / "address").read_text().strip()
        except OSError:
            continue
        if address:
            out[name] = address
    return out
