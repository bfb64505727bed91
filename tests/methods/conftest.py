"""Fixtures for tests/methods (the int8 ones live in int8_helpers.py; the digits splits in
tests/conftest.py)."""

from int8_helpers import digits_cnn  # noqa: F401
