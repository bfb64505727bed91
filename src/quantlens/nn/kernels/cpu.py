"""The CPU features the kernel registry's automatic choice can key on (probed once)."""

from __future__ import annotations

from typing import Literal

import torch

CpuFeature = Literal["avx2", "avx512", "avx512_bf16", "vnni", "amx"]

_FEATURES: frozenset[str] | None = None


def cpu_features() -> frozenset[str]:
    """The CPU features the automatic choice can key on: ``avx2``, ``avx512``,
    ``avx512_bf16``, ``vnni`` (AVX512-VNNI int8 dot products), ``amx`` (those torch reports
    for this machine).

    Returns:
        The feature names present, probed once per process.

    Example:
        >>> "avx2" in cpu_features()
        True
    """
    global _FEATURES
    if _FEATURES is None:
        probes = {
            "avx2": "_is_avx2_supported",
            "avx512": "_is_avx512_supported",
            "avx512_bf16": "_is_avx512_bf16_supported",
            "vnni": "_is_vnni_supported",
            "amx": "_is_amx_tile_supported",
        }
        found = set()
        for name, fn in probes.items():
            try:
                if getattr(torch.cpu, fn)():
                    found.add(name)
            except (AttributeError, RuntimeError):
                pass
        _FEATURES = frozenset(found)
    return _FEATURES


__all__ = ["CpuFeature", "cpu_features"]
