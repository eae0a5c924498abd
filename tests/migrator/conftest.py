"""Fixtures of the migrator tests."""

from __future__ import annotations

import pytest

from tests.support.buses import unique


@pytest.fixture
def run_label() -> str:
    """``fmtest=<unique>``: put on everything the test's agents create."""
    return f"fmtest={unique('mg')}"
