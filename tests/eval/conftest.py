"""Set-up of the eval tests: one thread, a fast Static digits model (the digits CNN and the
``digits_test_128`` subset come from tests/conftest.py)."""

from __future__ import annotations

import pytest

import quantlens as ql


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small models: more threads only contend on a shared machine (tests/conftest.py)."""


@pytest.fixture(scope="session")
def digits_static(digits_model, digits_calib):
    """A fast Static int8 model: min-max ranges from one calibration batch."""
    calib = digits_calib.inputs[:64]
    return ql.quantize(
        digits_model, ql.Static(observer="minmax", calib_batches=1), calib_data=calib
    )
