"""The kernel-case registry: one selection rule for every quantized layer that has kernels.

A kernel path (:class:`KernelPath`) is one way to compute a layer's matmul. It belongs to a
layer *family* (``"weight_only"``: :class:`~quantlens.nn.QLinear`; ``"conv"``:
:class:`~quantlens.nn.QConv2d`; ``"dynamic"``:
:class:`~quantlens.nn.dynamic_linear.DynamicLinear`), declares where it can run at all
(input ``devices``, quantized ``engines``, weight :class:`Shapes`, the layer's weight
``dtype``) and says in ``format_reason(layer)`` why it cannot run a layer's weight format
(or None); :meth:`KernelPath.accepts` puts the checks together. Its :class:`Case` s say
when automatic dispatch should pick it: the code widths, the number of tokens, the input
dtype and device, the CPU features and the weight size it serves, and a priority.

The rule, for a layer and an input of ``tokens`` rows: a forced path (``layer.kernel =
name``) runs if it can, else raises; under ``"auto"``, among the cases of the family's paths
that match, the lowest ``priority`` whose path can run the layer wins. Each family
registers a catch-all case (``dense`` for weight-only and conv, ``reference`` / ``upcast``
for dynamic int8 / float16) so that something always runs.

How to add a path: declare the shapes the underlying op runs (:class:`Shapes`; the sweep in
tests/nn/test_kernel_shapes.py runs every registered path over widths 1-130 at 1-17 tokens
in a child process, so that a crash fails the test), write ``format_reason(layer) -> str |
None`` (why it cannot run the layer's weight format, or None), ``prepare(layer, dtype) -> state``
and ``run(layer, state, x) -> y`` (``x`` already in the path's compute dtype, ``y`` with
bias added), then ``register_kernel(KernelPath(...))`` with the cases it should win. Force a
path with ``layer.kernel = "name"`` or, for a whole model, ``with force_kernel(model,
"name"):``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import nn

from quantlens.errors import InputError, SchemeError, UnknownNameError
from quantlens.nn.kernels.cpu import CpuFeature, cpu_features
from quantlens.nn.shapes import Shapes
from quantlens.nn.threads import run_with_policy

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

Family = Literal["weight_only", "conv", "dynamic"]


@dataclass(frozen=True)
class KernelKey:
    """What a layer tells the registry about itself (:meth:`KernelLayer.kernel_key`).

    Args:
        family: which paths may run it.
        shape: the weight's ``(out_features, in_features)``.
        bits: the code width of its weight.
        dtype: the weight's storage dtype where a family has several (``"int8"``,
            ``"float16"``); None where paths do not tell them apart.
        allow_activation_quant: automatic dispatch may pick paths that round the input.
        device: the device of the layer's weight.
        describe: how error messages name the layer's weight format.
    """

    family: Family
    shape: tuple[int, int]
    bits: int
    dtype: str | None = None
    allow_activation_quant: bool = False
    device: str = "cpu"
    describe: str = "this layer"


class KernelLayer(Protocol):
    """A layer whose forward goes through the registry: it names its forced path
    (``kernel``), keeps derived weights in ``_cache`` (cleared when its buffers change) and
    describes itself with :meth:`kernel_key`."""

    kernel: str
    _cache: dict[Any, Any]

    def kernel_key(self) -> KernelKey:
        """The layer's :class:`KernelKey`."""
        ...


@dataclass(frozen=True)
class Case:
    """A situation a path serves under automatic dispatch.

    Args:
        bits: code widths served (None: any).
        tokens: ``(low, high)``: served when ``low <= tokens < high`` (``high`` None: no limit).
        dtypes: input dtypes served.
        needs: CPU features (see :func:`cpu_features`) that must all be present.
        numel: ``(low, high)`` range of the layer's weight elements (``high`` None: no limit).
        devices: input device types served (None: any).
        priority: among all matching cases of all paths, the lowest wins.

    Example:
        >>> Case(bits=(4,), tokens=(1, 16), needs=("avx512_bf16",), priority=10)
    """

    bits: tuple[int, ...] | None = None
    tokens: tuple[int, int | None] = (1, None)
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES
    needs: tuple[CpuFeature, ...] = ()
    numel: tuple[int, int | None] = (0, None)
    devices: tuple[str, ...] | None = None
    priority: int = 50

    def matches(
        self, bits: int, tokens: int, dtype: torch.dtype, numel: int = 0, device: str = "cpu"
    ) -> bool:
        """Whether this case serves the layer and input described by the arguments."""
        return (
            (self.bits is None or bits in self.bits)
            and dtype in self.dtypes
            and (self.devices is None or device in self.devices)
            and _within(tokens, self.tokens)
            and _within(numel, self.numel)
            and cpu_features().issuperset(self.needs)
        )


def _within(value: int, bounds: tuple[int, int | None]) -> bool:
    low, high = bounds
    return low <= value and (high is None or value < high)


@dataclass(frozen=True)
class KernelPath:
    """One way to compute ``x @ W.T + b`` for a quantized layer (see the module docstring).

    Args:
        name: what ``layer.kernel = name`` selects (unique within its family).
        format_reason: ``layer -> None`` if the path can run this layer's weight format,
            else the reason (devices, shapes and engines are checked before it).
        prepare: ``(layer, compute_dtype) -> state``, cached on the layer.
        run: ``(layer, state, x2d) -> y2d`` with ``x2d`` in ``compute_dtype``.
        family: the layers it runs.
        compute_dtype: the dtype the path computes in (None: the input's).
        cases: when automatic dispatch picks it.
        rtol: bound on ``||y - ref|| / ||ref||`` against the family's reference path.
        quantizes_activations: the path rounds the input to integers (W8A8); automatic
            dispatch skips it for layers with ``allow_activation_quant = False``.
        shapes: the weight shapes it runs (checked before ``format_reason``).
        dtype: the weight storage dtype it runs (None: any).
        devices: the input device types it runs on (None: any).
        engines: the ``torch.backends.quantized.engine`` values it needs (None: any).

    Example:
        >>> register_kernel(KernelPath("dense", lambda layer: None, prepare, run,
        ...                            cases=(Case(priority=50),)))
    """

    name: str
    format_reason: Callable[[Any], str | None]
    prepare: Callable[[Any, torch.dtype], Any]
    run: Callable[[Any, Any, torch.Tensor], torch.Tensor]
    family: Family = "weight_only"
    compute_dtype: torch.dtype | None = None
    cases: tuple[Case, ...] = ()
    rtol: float = 0.0
    quantizes_activations: bool = False
    shapes: Shapes = field(default_factory=Shapes)
    dtype: str | None = None
    devices: tuple[str, ...] | None = None
    engines: tuple[str, ...] | None = None

    def accepts(self, layer: Any, x2d: torch.Tensor | None = None) -> str | None:
        """Why this path cannot run ``layer`` (on ``x2d``'s device if given, else the
        layer's), or None if it can: its devices, shapes, engines, then ``format_reason``.

        Example:
            >>> kernel_paths()["int8pack"].accepts(qlinear_20_inputs)
            'it needs in_features that are a multiple of 16 (this layer has 20)'
        """
        key = layer.kernel_key()
        return _reason(self, layer, key, x2d.device.type if x2d is not None else key.device)

    def why_not(self, layer: Any, x2d: torch.Tensor | None = None) -> str | None:
        """The same as :meth:`accepts`."""
        return self.accepts(layer, x2d)


def _reason(path: KernelPath, layer: Any, key: KernelKey, device: str) -> str | None:
    return (
        _device_reason(path, device)
        or path.shapes.reason(*key.shape)
        or _engine_reason(path)
        or path.format_reason(layer)
    )


def _device_reason(path: KernelPath, device: str) -> str | None:
    if path.devices is None or device in path.devices:
        return None
    return f"it runs on {'/'.join(d.upper() for d in path.devices)} only, the input is on {device}"


def _engine_reason(path: KernelPath) -> str | None:
    engine = torch.backends.quantized.engine
    if path.engines is None or engine in path.engines:
        return None
    return f"the quantized engine is {engine!r}, not {'/'.join(path.engines)}"


_REGISTRY: dict[str, dict[str, KernelPath]] = {"weight_only": {}, "conv": {}, "dynamic": {}}


def register_kernel(path: KernelPath) -> KernelPath:
    """Add (or replace) a kernel path in its family.

    Args:
        path: the path.

    Returns:
        ``path``.

    Example:
        >>> register_kernel(dataclasses.replace(kernel_paths()["dense"], name="dense2"))
    """
    _REGISTRY[path.family][path.name] = path
    return path


def kernel_paths(family: Family = "weight_only") -> dict[str, KernelPath]:
    """All registered paths of ``family`` by name.

    Example:
        >>> sorted(kernel_paths())[:2]
        ['dense', 'dense_bf16']
    """
    return dict(_REGISTRY[family])


def get_kernel(name: str, family: Family = "weight_only", dtype: str | None = None) -> KernelPath:
    """The path ``name`` of ``family`` (for ``dtype`` weights, if given); raises
    :class:`UnknownNameError` listing the valid names."""
    path = _REGISTRY[family].get(name)
    if path is None or (dtype is not None and path.dtype not in (None, dtype)):
        valid = [
            n for n, p in _REGISTRY[family].items() if dtype is None or p.dtype in (None, dtype)
        ]
        what = f"{dtype} kernel path" if dtype else "kernel path"
        raise UnknownNameError(f"unknown {what} {name!r}; valid: auto, {', '.join(valid)}")
    return path


def why_not(layer: Any, name: str, device: str | None = None) -> str | None:
    """Why path ``name`` cannot run ``layer`` (cached per layer, device and engine), or None.

    Example:
        >>> why_not(qlinear_20_inputs, "int8pack")
        'it needs in_features that are a multiple of 16 (this layer has 20)'
    """
    key = layer.kernel_key()
    device = device or key.device
    cache_key = ("accepts", name, device, torch.backends.quantized.engine)
    if cache_key not in layer._cache:
        layer._cache[cache_key] = _reason(get_kernel(name, key.family), layer, key, device)
    return layer._cache[cache_key]


def select(layer: Any, tokens: int, dtype: torch.dtype, device: str | None = None) -> KernelPath:
    """The path ``layer`` runs for ``tokens`` rows of ``dtype`` input on ``device`` (default:
    the layer's): the forced one, else the path of the lowest-priority matching case that
    can run the layer.

    Raises:
        SchemeError: the forced path cannot run the layer's weight.
        InputError: the forced path cannot run on this device, or no path can.
    """
    key = layer.kernel_key()
    device = device or key.device
    forced = layer.kernel
    if forced != "auto":
        path = get_kernel(forced, key.family)
        reason = why_not(layer, forced, device)
        if reason:
            error = InputError if _device_reason(path, device) else SchemeError
            raise error(
                f"kernel path {forced!r} cannot run {key.describe}: {reason}; "
                "set layer.kernel = 'auto'"
            )
        return path
    numel = key.shape[0] * key.shape[1]
    matches = [
        (case.priority, path.name)
        for path in _REGISTRY[key.family].values()
        if path.dtype in (None, key.dtype)
        and (key.allow_activation_quant or not path.quantizes_activations)
        for case in path.cases
        if case.matches(key.bits, tokens, dtype, numel, device)
    ]
    for _, name in sorted(matches):
        if why_not(layer, name, device) is None:
            return _REGISTRY[key.family][name]
    raise InputError(f"no kernel path runs {key.describe} on {device}")


def run(layer: Any, x2d: torch.Tensor, path: KernelPath | None = None) -> torch.Tensor:
    """``layer``'s output for a 2-D input, through ``path`` (default: :func:`select`).

    The choice and the prepared state are memoised per (tokens, dtype, device, forced
    kernel, engine) in the layer's cache, so a call costs one dict lookup besides the kernel.
    Linear layers' small calls run on the thread count ``layer.thread_policy`` chooses
    (:mod:`quantlens.nn.threads`).

    Example:
        >>> y = run(qlinear, torch.randn(8, qlinear.in_features))
    """
    engine = torch.backends.quantized.engine
    dtype = x2d.dtype
    memo = (
        "run",
        x2d.shape[0],
        dtype,
        x2d.device,
        layer.kernel,
        getattr(layer, "allow_activation_quant", False),
        engine,
        path.name if path else None,
    )
    hit = layer._cache.get(memo)
    if hit is None:
        chosen = path or select(layer, x2d.shape[0], dtype, x2d.device.type)
        compute = chosen.compute_dtype or x2d.dtype
        state_key = ("kernel", chosen.name, compute, engine)
        if state_key not in layer._cache:
            with torch.no_grad(), warnings.catch_warnings():
                # quantized tensor creation is deprecated upstream, still the API
                warnings.filterwarnings("ignore", message=r".*quantized tensor creation.*")
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                layer._cache[state_key] = chosen.prepare(layer, compute)
        key = layer.kernel_key()
        work = 0 if key.family == "conv" else x2d.shape[0] * key.shape[0] * key.shape[1]
        hit = layer._cache[memo] = (chosen, compute, layer._cache[state_key], work)
    chosen, compute, state, work = hit
    if dtype != compute:
        x2d = x2d.to(compute)

    def call() -> torch.Tensor:
        y = chosen.run(layer, state, x2d)
        return y if y.dtype == dtype else y.to(dtype)

    return run_with_policy(layer, memo, work, call)


@contextlib.contextmanager
def force_kernel(model: nn.Module, name: str) -> Iterator[None]:
    """Run every quantized layer of ``model`` whose family has a path ``name`` through it
    inside the block (``"auto"``: automatic dispatch for all of them).

    Example:
        >>> with force_kernel(qmodel, "reference"):
        ...     y_ref = qmodel(x)
    """
    if name != "auto" and not any(name in paths for paths in _REGISTRY.values()):
        get_kernel(name)  # raises, listing the weight-only paths
    keyed: list[Any] = [m for m in model.modules() if hasattr(m, "kernel_key")]
    layers = [m for m in keyed if name == "auto" or name in _REGISTRY[m.kernel_key().family]]
    saved = [m.kernel for m in layers]
    try:
        for m in layers:
            m.kernel = name
        yield
    finally:
        for m, k in zip(layers, saved):
            m.kernel = k
