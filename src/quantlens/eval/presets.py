"""Short method names (``w4``, ``static``, ...) and the sweep grids: the one place they live.

``make_config("w4")`` gives the config the short name stands for; the CLI's ``--methods``
and ``--sweep`` and ``ql.compare`` with a list of names all read this table. A preset whose
method is not registered in this install is reported as unavailable, not silently dropped.

To add a preset: one line in :data:`PRESETS`. To change what ``--sweep`` tries: :data:`SWEEPS`.

Example:
    >>> make_config("w4")
    WeightOnly(bits=4, group_size=32, ...)
    >>> list(sweep_configs("static"))[:2]
    ['observer=minmax,per_channel=True', 'observer=minmax,per_channel=False']
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from quantlens.errors import ConfigError, UnknownNameError
from quantlens.methods.base import QuantConfig, get_method, methods


@dataclass(frozen=True)
class Preset:
    """A short name for a method config: the registry name, its settings, one line of help."""

    method: str
    settings: Mapping = field(default_factory=dict)
    help: str = ""


PRESETS: dict[str, Preset] = {
    "dynamic": Preset("dynamic", {}, "int8 weights, activations quantized on the fly (CPU serving)"),
    "static": Preset("static", {}, "int8 weights and activations, ranges from calibration data"),
    "qat": Preset("qat", {}, "int8 quantization-aware training (fine-tunes on train data)"),
    "qat4": Preset("qat", {"bits": 4}, "QAT with 4-bit weights on int8 kernels"),
    "w8": Preset("weight_only", {"bits": 8, "group_size": None}, "weight-only int8, per output channel"),
    "w4": Preset("weight_only", {"bits": 4, "group_size": 32}, "weight-only 4-bit, groups of 32"),
    "w2": Preset("weight_only", {"bits": 2, "group_size": 16}, "weight-only 2-bit, groups of 16"),
}

DEFAULT_METHODS = ("dynamic", "static", "qat", "w8", "w4")

SWEEPS: dict[str, dict[str, Sequence]] = {
    "static": {"observer": ("minmax", "histogram", "percentile"), "per_channel": (True, False)},
    "weight_only": {"bits": (8, 4, 2), "group_size": (None, 32)},
    "qat": {"bits": (8, 4), "per_channel": (True, False)},
    "dynamic": {"per_channel": (True, False), "activations": ("per_token", "per_tensor")},
}
_SWEEP_ALIASES = {"w8": "weight_only", "w4": "weight_only", "w2": "weight_only", "qat4": "qat"}


def available(name: str) -> bool:
    """Whether the preset's method is registered in this install."""
    return name in PRESETS and PRESETS[name].method in methods()


def default_methods() -> list[str]:
    """The presets ``quantlens compare`` runs by default that this install has."""
    return [n for n in DEFAULT_METHODS if available(n)]


def check_names(names: Sequence[str]) -> None:
    """Raise UnknownNameError naming the unknown entries and listing the valid ones."""
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise UnknownNameError(
            f"unknown method(s) {', '.join(map(repr, unknown))}; valid methods: {', '.join(PRESETS)}"
        )


def _build(method: str, settings: Mapping) -> QuantConfig:
    cls = get_method(method).config_cls
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no setting(s) {', '.join(unknown)}")
    return cls(**settings)


def make_config(name: str) -> QuantConfig:
    """The config a short name stands for (``"w4"`` -> ``WeightOnly(bits=4, group_size=32)``).

    Raises:
        UnknownNameError: not a preset (the message lists them), or its method is not
            installed here.
    """
    check_names([name])
    preset = PRESETS[name]
    if preset.method not in methods():
        raise UnknownNameError(
            f"method {name!r} ({preset.method}) is not available in this install; "
            f"available: {', '.join(n for n in PRESETS if available(n))}"
        )
    return _build(preset.method, preset.settings)


def sweep_method(name: str) -> str:
    """The registry method a ``--sweep`` over ``name`` (a preset or method name) varies."""
    method = _SWEEP_ALIASES.get(name, PRESETS[name].method if name in PRESETS else name)
    if method not in SWEEPS:
        raise UnknownNameError(f"no sweep for {name!r}; sweepable: {', '.join(sorted(SWEEPS))}")
    return method


def sweep_configs(name: str, grid: Mapping[str, Sequence] | None = None) -> dict[str, QuantConfig]:
    """Every combination of ``grid`` (default :data:`SWEEPS`) for one method, by label.

    Args:
        name: a method (``"static"``, ``"weight_only"``) or a preset of it (``"w4"``).
        grid: ``{setting: values}``; settings the config does not have raise ConfigError.

    Returns:
        ``{"observer=minmax,per_channel=True": Static(...), ...}`` in grid order.
    """
    method = sweep_method(name)
    if method not in methods():
        raise UnknownNameError(f"method {method!r} is not available in this install")
    grid = dict(grid if grid is not None else SWEEPS[method])
    base = dict(PRESETS[name].settings) if name in PRESETS else {}
    out: dict[str, QuantConfig] = {}
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values))
        label = ",".join(f"{k}={v}" for k, v in settings.items())
        out[label] = _build(method, {**base, **settings})
    return out
