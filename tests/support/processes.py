"""Ending the child processes a test started (always by the handle it holds, never by name)."""

from __future__ import annotations

import subprocess
from typing import Any

__all__ = ["kill", "terminate"]


def terminate(proc: subprocess.Popen[Any] | None, timeout: float = 20.0) -> int | None:
    """SIGTERM ``proc`` and wait up to ``timeout`` seconds for it, then SIGKILL it; its exit
    code (None: there was no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def kill(proc: subprocess.Popen[Any] | None) -> None:
    """SIGKILL ``proc`` if it still runs, and reap it."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
