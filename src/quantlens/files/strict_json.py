"""Strict JSON for result files: no ``Infinity``/``NaN`` (which ``JSON.parse`` and most
parsers reject). A non-finite number is written as ``null`` and its place is listed under
``"non_finite"`` as a JSON Pointer (RFC 6901), e.g. ``{"/rows/0/sqnr_db": "inf"}`` (the float
row's SQNR against itself is infinite); :func:`from_json_text` puts them back.

Example:
    >>> from_json_text(to_json_text({"x": [float("inf")]}))
    {'x': [inf]}
"""

from __future__ import annotations

import json
import math

NON_FINITE_KEY = "non_finite"
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _escape_pointer(key) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _strict(value, pointer: str, found: dict[str, str]):
    """``value`` with every non-finite float replaced by None, its pointer noted in ``found``."""
    if isinstance(value, float) and not math.isfinite(value):
        found[pointer] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return None
    if isinstance(value, dict):
        return {k: _strict(v, f"{pointer}/{_escape_pointer(k)}", found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v, f"{pointer}/{i}", found) for i, v in enumerate(value)]
    return value


def to_json_text(data: dict) -> str:
    """``data`` as strict JSON (see the module docstring for how ``inf``/``nan`` are kept).

    Example:
        >>> json.loads(to_json_text({"rows": [{"sqnr_db": float("inf")}]}))
        {'rows': [{'sqnr_db': None}], 'non_finite': {'/rows/0/sqnr_db': 'inf'}}
    """
    found: dict[str, str] = {}
    clean = _strict(data, "", found)
    if found:
        clean[NON_FINITE_KEY] = found
    return json.dumps(clean, indent=1, default=str, allow_nan=False)


def from_json_text(text: str) -> dict:
    """The dict :func:`to_json_text` wrote, with its non-finite numbers restored (files an
    older quantlens wrote with bare ``Infinity``/``NaN`` are read too)."""
    data = json.loads(text)
    for pointer, kind in (data.pop(NON_FINITE_KEY, None) or {}).items():
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        if not parts or kind not in _NON_FINITE:
            continue
        parent = data
        try:
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            last = int(parts[-1]) if isinstance(parent, list) else parts[-1]
            if parent[last] is None:
                parent[last] = _NON_FINITE[kind]
        except (KeyError, IndexError, ValueError, TypeError):
            continue  # a pointer that does not resolve: leave the null
    return data


__all__ = ["NON_FINITE_KEY", "from_json_text", "to_json_text"]
