"""Fixtures of the export tests: the digits test split."""

import pytest

from quantlens import zoo


@pytest.fixture(scope="session")
def digits():
    return zoo.load_dataset("digits", "test")
