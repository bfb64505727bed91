"""Fixtures of the export tests: digits data, exported-file helpers."""

import pytest

from quantlens import zoo


@pytest.fixture(scope="session")
def digits():
    return zoo.load_dataset("digits", "test")
