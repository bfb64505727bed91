"""Short method names (``w4``, ``static``, ...) and the sweep grids: the one place they live.

``make_config("w4")`` gives the config the short name stands for; the CLI's ``--methods``
and ``--sweep`` and ``ql.compare`` with a list of names all read this table. A preset whose
method is not registered in this install is reported as unavailable, not silently dropped.

Given the model (``make_config("w8", model)``, as ``ql.compare`` and ``quantlens compare``
do), a weight-only preset also covers the model's ``Conv2d`` layers when it has any
(``WeightOnly`` defaults to Linear only, which would leave a CNN's convolutions in float and
its checkpoint no smaller); ``w4`` then uses one scale per output channel, since channel
counts such as 1 or 16 do not divide into groups of 32. The config each row used is
recorded in full in ``results.json``. ``w4-gptq``, ``w4-awq``, ``w3-gptq`` and ``w4-hqq``
are the language-model settings (groups of 128, Linear layers only, as GPTQ/AWQ/HQQ users
run them).

To add a preset: one line in :data:`PRESETS`. To change what ``--sweep`` tries: :data:`SWEEPS`
(or pass ``grid=``; :func:`parse_grid` reads the CLI's ``--grid key=v1,v2 ...``). The
``backend`` axis of the static and QAT grids lists the quantized engines this torch build
has (:func:`engines_here`).

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

from torch import nn

from quantlens.errors import ConfigError, QuantlensError, UnknownNameError
from quantlens.methods.backends.torch_ao import BACKENDS, available_engines
from quantlens.methods.base import QuantConfig, get_method, methods


@dataclass(frozen=True)
class Preset:
    """A short name for a method config: the registry name, its settings, one line of help,
    and the settings that replace them for a model with convolutions (``conv_settings``)."""

    method: str
    settings: Mapping = field(default_factory=dict)
    help: str = ""
    conv_settings: Mapping = field(default_factory=dict)


_CONV = ("linear", "conv2d")

PRESETS: dict[str, Preset] = {
    "dynamic": Preset(
        "dynamic", {}, "int8 weights, activations quantized on the fly (CPU serving)"
    ),
    "static": Preset("static", {}, "int8 weights and activations, ranges from calibration data"),
    "qat": Preset("qat", {}, "int8 quantization-aware training (fine-tunes on train data)"),
    "qat4": Preset("qat", {"bits": 4}, "QAT with 4-bit weights on int8 kernels"),
    "w8": Preset(
        "weight_only",
        {"bits": 8, "group_size": None},
        "weight-only int8, per output channel (Linear, and Conv2d in a CNN)",
        {"modules": _CONV},
    ),
    "w4": Preset(
        "weight_only",
        {"bits": 4, "group_size": 32},
        "weight-only 4-bit, groups of 32 (in a CNN: Linear and Conv2d, per output channel)",
        {"modules": _CONV, "group_size": None},
    ),
    "w4-gptq": Preset(
        "weight_only",
        {"bits": 4, "group_size": 128, "algorithm": "gptq"},
        "weight-only 4-bit GPTQ, groups of 128 (act-order; needs calibration data)",
    ),
    "w4-awq": Preset(
        "weight_only",
        {"bits": 4, "group_size": 128, "algorithm": "awq"},
        "weight-only 4-bit AWQ (activation-aware scales), groups of 128 (needs calibration data)",
    ),
    "w4-hqq": Preset(
        "weight_only",
        {"bits": 4, "group_size": 128, "algorithm": "hqq"},
        "weight-only 4-bit HQQ (half-quadratic scale/zero fit), groups of 128",
    ),
    "w3-gptq": Preset(
        "weight_only",
        {"bits": 3, "group_size": 128, "algorithm": "gptq"},
        "weight-only 3-bit GPTQ, groups of 128 (act-order; needs calibration data)",
    ),
    "w2": Preset(
        "weight_only",
        {"bits": 2, "group_size": 16},
        "weight-only 2-bit, groups of 16 (Conv2d too in a CNN)",
        {"modules": _CONV},
    ),
}

DEFAULT_METHODS = ("dynamic", "static", "qat", "w8", "w4")

# the Static/QAT backends, less fbgemm: x86's predecessor, the same kernels on x86 CPUs
SWEEP_ENGINES = tuple(b for b in BACKENDS if b != "fbgemm")


def engines_here() -> tuple[str, ...]:
    """The quantized engines of :data:`SWEEP_ENGINES` this torch build has (``("x86",)`` if
    none)."""
    here = available_engines()
    return tuple(e for e in SWEEP_ENGINES if e in here) or ("x86",)


SWEEPS: dict[str, dict[str, Sequence]] = {
    "static": {
        "observer": ("minmax", "histogram", "percentile"),
        "per_channel": (True, False),
        "backend": engines_here(),
    },
    "weight_only": {"bits": (8, 4, 2), "group_size": (None, 32)},
    "qat": {"bits": (8, 4), "per_channel": (True, False), "backend": engines_here()},
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
            f"unknown method(s) {', '.join(map(repr, unknown))}; "
            f"valid methods: {', '.join(PRESETS)}"
        )


def _build(method: str, settings: Mapping) -> QuantConfig:
    cls = get_method(method).config_cls
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no setting(s) {', '.join(unknown)}")
    return cls(**settings)


def has_convolutions(model: nn.Module | None) -> bool:
    """Whether ``model`` has a ``Conv2d`` layer (weight-only presets then cover them)."""
    return model is not None and any(isinstance(m, nn.Conv2d) for m in model.modules())


def preset_settings(name: str, model: nn.Module | None = None) -> dict:
    """The settings preset ``name`` uses for ``model`` (see the module docstring)."""
    check_names([name])
    preset = PRESETS[name]
    settings = dict(preset.settings)
    if preset.conv_settings and has_convolutions(model):
        settings.update(preset.conv_settings)
    return settings


def make_config(name: str, model: nn.Module | None = None) -> QuantConfig:
    """The config a short name stands for (``"w4"`` -> ``WeightOnly(bits=4, group_size=32)``).

    Args:
        name: a preset name (:data:`PRESETS`).
        model: the model it is for; a weight-only preset then covers its convolutions
            too (see the module docstring). None: the preset as listed.

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
    return _build(preset.method, preset_settings(name, model))


def sweep_method(name: str) -> str:
    """The registry method a ``--sweep`` over ``name`` (a preset or method name) varies."""
    method = _SWEEP_ALIASES.get(name, PRESETS[name].method if name in PRESETS else name)
    if method not in SWEEPS:
        raise UnknownNameError(f"no sweep for {name!r}; sweepable: {', '.join(sorted(SWEEPS))}")
    return method


def _value(text: str):
    """One ``--grid`` value: true/false, none, an int, a float, ``a+b`` (a tuple), else the text."""
    if "+" in text:
        return tuple(_value(t) for t in text.split("+") if t)
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_grid(tokens: Sequence[str], name: str) -> dict[str, tuple]:
    """A sweep grid from ``key=v1,v2`` tokens (the CLI's ``--grid``), checked against the
    settings of the config ``name`` (a method or preset) sweeps.

    Values: ``true``/``false``, ``none``, numbers, ``linear+conv2d`` for a tuple, else text.

    Raises:
        ConfigError: a token without ``=`` or values, a setting the config does not have
            (the message lists those it has), or one given twice.

    Example:
        >>> parse_grid(["observer=minmax,mse", "per_channel=true,false"], "static")
        {'observer': ('minmax', 'mse'), 'per_channel': (True, False)}
    """
    cls = get_method(sweep_method(name)).config_cls
    settable = [f.name for f in dataclasses.fields(cls) if f.name not in ("method", "version")]
    grid: dict[str, tuple] = {}
    for token in tokens:
        key, eq, values = token.partition("=")
        key = key.strip().replace("-", "_")
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or not key or not parts:
            raise ConfigError(
                f"--grid entry {token!r} is not key=value1,value2; e.g. observer=minmax,mse"
            )
        if key not in settable:
            raise ConfigError(
                f"--grid: {cls.__name__} has no setting {key!r}; settings: {', '.join(settable)}"
            )
        if key in grid:
            raise ConfigError(
                f"--grid: {key} is given twice; put all its values in one entry ({key}=a,b)"
            )
        grid[key] = tuple(_value(v) for v in parts)
    if not grid:
        raise ConfigError(
            "--grid is empty; give entries such as observer=minmax,mse per_channel=true,false"
        )
    return grid


def sweep_configs(
    name: str, grid: Mapping[str, Sequence] | None = None, model: nn.Module | None = None
) -> dict[str, QuantConfig]:
    """Every combination of ``grid`` (default :data:`SWEEPS`) for one method, by label.

    Args:
        name: a method (``"static"``, ``"weight_only"``) or a preset of it (``"w4"``).
        grid: ``{setting: values}``; settings the config does not have raise ConfigError.
        model: the model swept (a weight-only sweep then covers its convolutions too).

    Returns:
        ``{"observer=minmax,per_channel=True,backend=x86": Static(...), ...}`` in grid order.

    Raises:
        ConfigError: a setting the config does not have, or a combination it rejects (the
            message names the combination).
    """
    method = sweep_method(name)
    if method not in methods():
        raise UnknownNameError(f"method {method!r} is not available in this install")
    grid = dict(grid if grid is not None else SWEEPS[method])
    if name in PRESETS:
        base = preset_settings(name, model)
    elif method == "weight_only" and has_convolutions(model):
        base = {"modules": _CONV}
    else:
        base = {}
    out: dict[str, QuantConfig] = {}
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values))
        label = ",".join(
            f"{k}={'+'.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in settings.items()
        )
        try:
            out[label] = _build(method, {**base, **settings})
        except QuantlensError as exc:
            raise ConfigError(f"sweep setting {label}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"sweep setting {label}: {type(exc).__name__}: {exc}") from exc
    return out
