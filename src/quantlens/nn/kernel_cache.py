"""A layer's cache of prepared kernel state (packed weights), kept out of state dicts,
copies and pickles: it is rebuilt from the layer's buffers on the next call.

Example:
    >>> class MyLayer(KernelCache, nn.Module): ...
"""

from __future__ import annotations

from typing import Any

from torch import nn


class KernelCache(nn.Module):
    """Mix-in for a quantized layer keeping prepared kernel state in ``self._cache``: the
    cache is emptied when a state dict is loaded or the layer is moved or cast, and a
    copy or pickle starts with an empty one."""

    _cache: dict[Any, Any]

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._cache = {}
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        self._cache = {}
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state
