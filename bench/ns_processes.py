"""The processes of one bench run inside a pair of network namespaces (``tests.support.netns``),
each started by name in one of them, with its log under the run's directory."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from _common import REPO

from tests.support.netns import NsPair

__all__ = ["NsProcesses"]


class NsProcesses:
    """The processes of one run, each inside its namespace, with logs under ``root``."""

    def __init__(self, root: Path, pair: NsPair) -> None:
        self.root, self.pair = root, pair
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, ns: str, *argv: str, ready: str = "") -> None:
        """Start ``argv`` as ``name`` inside ``ns``; with ``ready``, wait (120 s at most) until
        its log says so."""
        with (self.root / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                self.pair.exec(ns, *argv), cwd=REPO, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 120
        while ready and ready not in self.log(name):
            if time.monotonic() > deadline or self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} did not start:\n{self.log(name)[-2000:]}")
            time.sleep(0.2)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM every process still running, then wait 30 s for each before killing it."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
