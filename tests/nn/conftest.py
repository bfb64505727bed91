"""tests/nn set-up: puts this folder on sys.path (so layer tests can ``from conformance
import LayerConformance``) and runs each test on one torch thread: the layers here are
small, and on a shared 2-core machine a second thread only adds contention."""

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs under the shared ``one_thread`` fixture (tests/conftest.py)."""
