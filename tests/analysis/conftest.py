"""Fixtures shared by the analysis tests: one thread, a Static digits model, and the test-only
weight-only method (the digits CNN and splits come from tests/conftest.py)."""

from __future__ import annotations

import pytest

import quantlens as ql


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small models: more threads only contend on a shared machine (tests/conftest.py)."""


@pytest.fixture(scope="session")
def digits_static(digits_model, digits_calib):
    """Static int8 with min-max ranges from the first 128 calibration images."""
    calib = digits_calib.inputs[:128]
    return ql.quantize(digits_model, ql.Static(observer="minmax"), calib_data=calib)


@pytest.fixture(scope="session")
def toy_method():
    """A minimal module-swapping weight-only method (see analysis_helpers.py), registered for the
    session."""
    from analysis_helpers import ToyWeightOnly, register, unregister

    register()
    yield ToyWeightOnly
    unregister()
