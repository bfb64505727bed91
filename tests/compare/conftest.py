"""Set-up of the compare tests: one thread (the digits CNN and the ``digits_test_128`` subset
come from tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small models: more threads only contend on a shared machine (tests/conftest.py)."""
