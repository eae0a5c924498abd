"""Fixtures of the deploy/ tests: the broker tests' mesh processes."""

from __future__ import annotations

from tests.broker.conftest import procs

__all__ = ["procs"]
