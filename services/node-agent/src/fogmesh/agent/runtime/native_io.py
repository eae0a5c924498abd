"""File and process reading helpers of the native runtime: logs, usage."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

__all__ = ["cpu_and_rss", "read_logs"]


def read_logs(files: list[Path], tail: int, since: float | None) -> list[str]:
    """The last ``tail`` lines of ``files`` (oldest first, "{unix time} {line}" records), only
    those stamped at or after ``since`` if given; without the stamps."""
    lines: list[str] = []
    for path in files:
        with contextlib.suppress(FileNotFoundError):  # rotated away meanwhile
            for raw in path.read_bytes().splitlines():
                stamp, _, text = raw.partition(b" ")
                try:
                    when = float(stamp)
                except ValueError:
                    when, text = 0.0, raw
                if since is None or when >= since:
                    lines.append(text.decode(errors="replace"))
    return lines[-tail:]


def cpu_and_rss(proc: psutil.Process) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS bytes of ``proc`` and its descendants."""
    import psutil  # loaded by the first native process looked at (native_state.alive_process)

    cpu, rss = 0.0, 0
    with contextlib.suppress(psutil.Error):
        for member in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                cpu += times.user + times.system
                rss += member.memory_info().rss
    return cpu, rss
