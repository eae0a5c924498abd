"""The agent's /proc reader (fogmesh.agent.procfs) gives the figures psutil gives on this
machine: memory total and available, CPU percent between two samples, the MAC the node id is
made from (in this network namespace and in a new one). Read one right after the other, so only
what the machine did in between differs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from fogmesh.agent import procfs
from fogmesh.agent.facts import mac_address


def test_memory_is_psutils() -> None:
    total, available = procfs.memory()
    mem = psutil.virtual_memory()
    assert total == mem.total
    assert abs(available - mem.available) <= max(mem.total // 100, 64 * 2**20)


def test_cpu_percent_is_psutils() -> None:
    meter = procfs.CpuMeter()
    psutil.cpu_percent(interval=None)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # some work of its own between the two samples
        sum(range(1000))
    ours, theirs = meter.percent(), psutil.cpu_percent(interval=None)
    assert 0.0 < ours <= 100.0
    assert abs(ours - theirs) <= 5.0, (ours, theirs)


def test_cpu_percent_of_a_fixed_stat_file(tmp_path: Path) -> None:
    """Busy is everything but idle and iowait; guest time is already in user and nice."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 700 100 0 0 0 50 0\ncpu0 1 2 3\n")
    meter = procfs.CpuMeter(tmp_path)
    stat.write_text("cpu  150 0 150 750 150 0 0 0 90 0\n")  # +100 busy, +100 idle / iowait
    assert meter.percent() == 50.0
    assert meter.percent() == 0.0  # no tick since


def test_memory_without_memavailable(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text(
        "MemTotal:  1000 kB\nMemFree:  100 kB\nBuffers:  50 kB\nCached:  250 kB\n"
    )
    assert procfs.memory(tmp_path) == (1000 * 1024, 400 * 1024)


def _psutil_mac() -> str:
    """The node's MAC as the agent found it with psutil."""
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        if name == "lo":
            continue
        for addr in addrs:
            if addr.family == psutil.AF_LINK and addr.address not in ("", "00:00:00:00:00:00"):
                return str(addr.address).replace(":", "").lower()
    return ""


def test_mac_address_is_psutils() -> None:
    expected = _psutil_mac() or f"{uuid.getnode():012x}"  # no MAC anywhere: the same fallback
    assert mac_address() == expected
    theirs = {
        name: addr.address
        for name, addrs in psutil.net_if_addrs().items()
        for addr in addrs
        if addr.family == psutil.AF_LINK and addr.address
    }
    assert procfs.link_addresses() == theirs


_IN_NEW_NETNS = """
import uuid
import psutil
from fogmesh.agent import procfs
from fogmesh.agent.facts import mac_address
theirs = {n: a.address for n, al in psutil.net_if_addrs().items() for a in al
          if a.family == psutil.AF_LINK and a.address}
print(procfs.link_addresses() == theirs, mac_address() == f"{uuid.getnode():012x}",
      sorted(procfs.link_addresses()))
"""


def test_a_new_network_namespace_shows_its_own_interfaces() -> None:
    """Under ``unshare -n`` the sysfs mount still shows the host's interfaces; the reader asks
    the kernel for this namespace's: only ``lo``, so the MAC falls back as psutil's did."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], check=False).returncode:
        pytest.skip("no unshare -n here (needs CAP_SYS_ADMIN)")
    out = subprocess.run(
        [unshare, "-n", sys.executable, "-c", _IN_NEW_NETNS],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip().split(maxsplit=2)  # fmt: skip
    assert out == ["True", "True", "['lo']"]
