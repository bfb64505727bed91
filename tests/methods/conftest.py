"""Fixtures for tests/methods (the int8 ones live in int8_helpers.py)."""

from int8_helpers import digits, digits_cnn  # noqa: F401
