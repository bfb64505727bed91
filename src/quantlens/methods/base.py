"""What every method shares: the config base class, the registry and layer selection.

(The summary of a quantize call lives in :mod:`quantlens.methods.summary`, the byte counts
methods record in :mod:`quantlens.methods.sizes`; ``module_bytes``,
``state_bytes`` and ``float_dtype_of`` are importable from here too.)

How to add a method (see the methods/weight_only/ package for a complete one):

1. Write a frozen dataclass deriving :class:`QuantConfig` (all fields with defaults).
2. Write ``apply(model, ctx) -> nn.Module`` that quantizes, in place, every module for which
   ``ctx.config_for(name)`` returns a config of your type, records each decision with
   ``ctx.summary.add(...)`` (a module a skip pattern leaves in float with
   ``ctx.record_skip(...)``) and returns the model (the same object or a new root).
3. Write ``rebuild(model, ctx) -> nn.Module`` that gives a float skeleton the
   quantized *structure* (no calibration, no real weights needed) so a checkpoint's
   tensors can be loaded into it.
4. Register: ``register_method("name", MyConfig, apply=apply, rebuild=rebuild, order=N)``.
   Methods of one model run in ascending ``order`` (whole-graph methods first).
5. Optionally give ``dequantize=fn`` (``fn(model) -> nn.Module``, in place): turn the
   method's quantized layers back into float layers holding the dequantized weights, so
   a checkpoint can be re-quantized with another config (``quantlens.api.dequantize``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from torch import nn

from quantlens.core.data import ModelInputs
from quantlens.errors import ConfigError, UnknownNameError
from quantlens.methods.sizes import (  # noqa: F401  (re-exported: methods import them here)
    float_dtype_of,
    module_bytes,
    state_bytes,
)
from quantlens.methods.summary import (  # noqa: F401  (re-exported: methods import them here)
    LAYER_ACTIONS,
    LayerAction,
    LayerRecord,
    QuantSummary,
)

CONFIG_VERSION = 1

SKIP_REASON = "matches a skip pattern"
"""The summary reason of a module that a ``skip`` pattern leaves in float."""


@dataclass(frozen=True)
class QuantConfig:
    """Base of every method config.

    Args:
        skip: fnmatch patterns of module names left in float (a pattern also covers the
            children of the modules it names: ``"encoder.layer.0"`` skips that whole block).
        overrides: ``{pattern: config}``; modules matching a pattern use that config instead
            (another method, or the same method with other settings). Skip wins over an
            override; among overrides, the first matching pattern wins.
    """

    skip: tuple[str, ...] = field(default=(), kw_only=True)
    overrides: tuple[tuple[str, QuantConfig], ...] = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        skip = (self.skip,) if isinstance(self.skip, str) else tuple(self.skip)
        object.__setattr__(self, "skip", skip)
        overrides = (
            self.overrides.items() if isinstance(self.overrides, Mapping) else self.overrides
        )
        normalized = []
        for pattern, cfg in overrides:
            if isinstance(cfg, Mapping):
                cfg = config_from_dict(cfg)
            if not isinstance(cfg, QuantConfig):
                raise ConfigError(
                    f"override {pattern!r} maps to {cfg!r}; give a config such as "
                    "ql.WeightOnly(bits=8)"
                )
            normalized.append((str(pattern), cfg))
        object.__setattr__(self, "overrides", tuple(normalized))

    @property
    def method(self) -> str:
        return method_for_config(type(self)).name

    def replace(self, **changes: Any) -> QuantConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """A JSON-ready dict, ``config_from_dict`` gives this config back."""
        out: dict[str, Any] = {"method": self.method, "version": CONFIG_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "overrides":
                value = [[p, c.to_dict()] for p, c in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def config_from_dict(data: Mapping) -> QuantConfig:
    """Rebuild a config from :meth:`QuantConfig.to_dict` output.

    A field missing from ``data`` takes the value the config class lists in its
    ``MISSING_FIELD_VALUES`` class attribute (what configs saved before the field existed
    meant), else the field's default.

    Raises:
        ConfigError: ``data`` is not an object, is from a newer config version, or has
            fields or values the method's config does not take.
        UnknownNameError: ``data["method"]`` is not a registered method.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"a config must be a JSON object with a 'method' key, got a {type(data).__name__}"
        )
    data = dict(data)
    name = data.pop("method", None)
    version = data.pop("version", CONFIG_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(f"config version must be an integer, got {version!r}")
    if version > CONFIG_VERSION:
        raise ConfigError(
            f"config version {version} is newer than this quantlens understands "
            f"({CONFIG_VERSION}); upgrade quantlens"
        )
    if not isinstance(name, str):
        raise ConfigError(
            f"a config needs a 'method' name (one of {', '.join(sorted(_METHODS))}), got {name!r}"
        )
    cls = get_method(name).config_cls
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no field(s) {', '.join(unknown)}; valid fields: "
            f"{', '.join(sorted(known))}"
        )
    data = {k: tuple(v) if isinstance(v, list) and k != "overrides" else v for k, v in data.items()}
    data = {
        **getattr(cls, "MISSING_FIELD_VALUES", {}),
        **data,
    }  # dicts written before a field existed
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{cls.__name__} cannot take these values ({exc})") from exc


def resolve(config: QuantConfig, name: str) -> QuantConfig | None:
    """The config that applies to module ``name`` under ``config``, or None to keep it float."""
    if any(matches(name, p) for p in config.skip):
        return None
    for pattern, sub in config.overrides:
        if matches(name, pattern):
            return resolve(sub, name)
    return config


def matches(name: str, pattern: str) -> bool:
    """Whether a ``skip`` / ``overrides`` pattern names module ``name`` (or a module above it).

    Example:
        >>> matches("encoder.layer.0.output", "encoder.layer.0")
        True
    """
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


def patterns(config: QuantConfig) -> list[str]:
    """Every skip and override pattern in ``config``, nested ones included."""
    out = list(config.skip)
    for pattern, sub in config.overrides:
        out.append(pattern)
        out.extend(patterns(sub))
    return out


def configs_in(config: QuantConfig) -> list[QuantConfig]:
    """``config`` and every config nested in its overrides."""
    out = [config]
    for _, sub in config.overrides:
        out.extend(configs_in(sub))
    return out


def check_patterns(config: QuantConfig, model: nn.Module) -> None:
    """Raise ConfigError naming every skip/override pattern that matches no module."""
    names = [n for n, _ in model.named_modules() if n]
    dead = [p for p in patterns(config) if not any(matches(n, p) for n in names)]
    if dead:
        sample = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise ConfigError(
            f"pattern(s) {', '.join(map(repr, dead))} match no module of the model (modules: "
            f"{sample})"
        )


# --- context and registry -----------------------------------------------------------------


C = TypeVar("C", bound="QuantConfig")


@dataclass
class QuantContext:
    """What an apply/rebuild function gets besides the model.

    Args:
        config: the config given to ``ql.quantize`` (overrides included).
        summary: where the method records what it did to each layer.
        calib_data: calibration batches, or None.
        example_inputs: example inputs, or None.
        progress: show progress bars (None: when the terminal is interactive).
        calib_batches: stop calibrating after this many batches.
        saved_layers: on a checkpoint load, the checkpoint's per-layer configs (name ->
            layer config), which rebuilds may follow; None otherwise.
        state: what a method keeps between its steps (prepare -> convert): a typed object
            of that method's (e.g. :class:`~quantlens.methods.int8_state.Int8State`), None
            until it sets one.
    """

    config: QuantConfig
    summary: QuantSummary
    calib_data: Any = None
    example_inputs: ModelInputs | None = None
    progress: bool | None = None
    calib_batches: int | None = None
    saved_layers: dict[str, dict[str, Any]] | None = None
    state: object | None = None

    @overload
    def config_for(self, name: str) -> QuantConfig | None: ...
    @overload
    def config_for(self, name: str, config_cls: type[C]) -> C | None: ...
    def config_for(self, name: str, config_cls: type | None = None) -> QuantConfig | None:
        """The resolved config of module ``name`` if it is of ``config_cls`` (default: any)."""
        cfg = resolve(self.config, name)
        if cfg is None or (config_cls is not None and not isinstance(cfg, config_cls)):
            return None
        return cfg

    def is_skipped(self, name: str) -> bool:
        return resolve(self.config, name) is None

    def record_skip(self, name: str, module: nn.Module | str, **fields) -> None:
        """Record that a skip pattern leaves module ``name`` in float, once: every method of
        a mixed config sees the skipped modules, the first to report one records it."""
        if not any(r.name == name and r.reason == SKIP_REASON for r in self.summary.records):
            self.summary.add(name, module, "skipped", reason=SKIP_REASON, **fields)


@dataclass(frozen=True)
class Method:
    name: str
    config_cls: type
    apply: Callable[[nn.Module, QuantContext], nn.Module]
    rebuild: Callable[[nn.Module, QuantContext], nn.Module]
    order: int = 50
    prepare: Callable[[nn.Module, QuantContext], nn.Module] | None = None
    convert: Callable[[nn.Module, QuantContext], nn.Module] | None = None
    dequantize: Callable[[nn.Module], nn.Module] | None = None


_METHODS: dict[str, Method] = {}


def register_method(
    name: str,
    config_cls: type,
    *,
    apply,
    rebuild,
    order: int = 50,
    prepare=None,
    convert=None,
    dequantize=None,
) -> None:
    """Make ``ql.quantize`` dispatch ``config_cls`` to ``apply`` (see the module docstring).

    Two-phase methods (Static, QAT) also give ``prepare`` (insert observers / fake
    quantization) and ``convert`` (produce the quantized model), used by ``ql.prepare`` and
    ``ql.convert``; their ``apply`` usually is prepare, calibrate, convert. Methods whose
    layers can be turned back into float layers give ``dequantize``."""
    _METHODS[name] = Method(name, config_cls, apply, rebuild, order, prepare, convert, dequantize)


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise UnknownNameError(
            f"unknown method {name!r}; valid methods: {', '.join(sorted(_METHODS))}"
        )
    return _METHODS[name]


def method_for_config(config_cls: type) -> Method:
    for method in _METHODS.values():
        if method.config_cls is config_cls:
            return method
    raise UnknownNameError(f"{config_cls.__name__} is not a registered method config")


def methods() -> dict[str, Method]:
    """All registered methods by name."""
    return dict(_METHODS)
