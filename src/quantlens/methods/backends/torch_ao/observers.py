"""torch.ao observers, fake quantization and qconfigs backed by quantlens' own core.

:class:`CoreObserver` / :class:`CoreFakeQuantize` are torch.ao observer and fake-quant
modules that delegate to ``quantlens.core.observers`` and ``quantlens.nn.FakeQuantize``, so
``observer="mse" | "percentile" | "entropy" | ...`` uses quantlens' range estimators inside
torch.ao's prepare/convert. :func:`make_qconfig` / :func:`make_qconfig_mapping` build the
per-backend qconfigs (uint8 activations per tensor, signed symmetric weights per channel,
``reduce_range`` where the backend's kernels need it).

The private torch.ao helper used here (``_get_default_qconfig_mapping_with_default_qconfig``)
has kept its signature since torch 2.0 (tested on 2.13.0).
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from quantlens.core.observers import get_observer
from quantlens.core.scheme import QScheme
from quantlens.errors import BackendError
from quantlens.methods.backends.torch_ao._upstream import quiet, tq
from quantlens.methods.backends.torch_ao.engines import REDUCE_RANGE
from quantlens.nn.fake_quant import FakeQuantize, Track


def _scheme(qscheme: torch.qscheme, quant_min: int, quant_max: int, ch_axis: int) -> QScheme:
    levels = quant_max - quant_min + 1
    bits = levels.bit_length() - 1
    if 1 << bits != levels:
        raise BackendError(
            f"quant range [{quant_min}, {quant_max}] is not a power-of-two number of levels"
        )
    per_channel = qscheme in (torch.per_channel_affine, torch.per_channel_symmetric)
    symmetric = qscheme in (torch.per_tensor_symmetric, torch.per_channel_symmetric)
    return QScheme(
        bits=bits,
        symmetric=symmetric,
        signed=quant_min < 0,
        granularity="per_channel" if per_channel else "per_tensor",
        axis=ch_axis if per_channel else None,
    )


def _default_range(dtype: torch.dtype, reduce_range: bool) -> tuple[int, int]:
    info = torch.iinfo(dtype)
    lo, hi = info.min, info.max
    if reduce_range:
        lo, hi = lo // 2, hi // 2
    return lo, hi


def _take_range_args(
    module: nn.Module,
    dtype: torch.dtype,
    qscheme: torch.qscheme,
    quant_min: int | None,
    quant_max: int | None,
    ch_axis: int,
    reduce_range: bool,
) -> QScheme:
    """Set the range attributes torch.ao reads on an observer or fake-quant module
    (``qscheme``, ``ch_axis``, ``quant_min``, ``quant_max``: the whole range of ``dtype``,
    halved with ``reduce_range``, where none is given) and return their QScheme."""
    if quant_min is None or quant_max is None:
        quant_min, quant_max = _default_range(dtype, reduce_range)
    ranges = {
        "qscheme": qscheme,
        "ch_axis": ch_axis,
        "quant_min": quant_min,
        "quant_max": quant_max,
    }
    for key, value in ranges.items():
        setattr(module, key, value)
    return _scheme(qscheme, quant_min, quant_max, ch_axis)


def _observer_base():
    with quiet():
        from torch.ao.quantization.fake_quantize import FakeQuantizeBase
        from torch.ao.quantization.observer import ObserverBase
    return ObserverBase, FakeQuantizeBase


if TYPE_CHECKING:
    from torch.ao.quantization import QConfig
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase as _FakeQuantizeBase
    from torch.ao.quantization.observer import ObserverBase as _ObserverBase
else:
    _ObserverBase, _FakeQuantizeBase = _observer_base()


class CoreObserver(_ObserverBase):
    """A torch.ao observer whose range comes from a quantlens core observer.

    Args:
        method: quantlens observer name (``"mse"``, ``"percentile"``, ``"entropy"``, ...).
        dtype, qscheme, quant_min, quant_max, ch_axis, reduce_range: as in torch.ao observers.
        **kwargs: passed to the quantlens observer (e.g. ``percentile=99.99``).
    """

    def __init__(
        self,
        method: str = "mse",
        dtype: torch.dtype = torch.quint8,
        qscheme: torch.qscheme = torch.per_tensor_affine,
        quant_min: int | None = None,
        quant_max: int | None = None,
        ch_axis: int = 0,
        reduce_range: bool = False,
        is_dynamic: bool = False,
        eps: float | None = None,
        factory_kwargs: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__(dtype=dtype, is_dynamic=is_dynamic)
        self.method = method
        self.scheme = _take_range_args(
            self, dtype, qscheme, quant_min, quant_max, ch_axis, reduce_range
        )
        self.observer = get_observer(method, axis=self.scheme.axis, **kwargs)
        self.observing = True  # False: pass tensors through without updating the range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() and self.observing:
            self.observer.update(x.detach().float())
        return x

    def sync(self, *, timeout: float | None = None) -> None:
        """Merge this observer's statistics over the ranks of the process group (a collective;
        nothing outside a group): see :meth:`quantlens.core.observers.Observer.sync`."""
        self.observer.sync(timeout=timeout)

    @torch.jit.export
    def calculate_qparams(self):  # type: ignore[override]  # TorchScript: no **kwargs
        if self.observer.min_val is None:  # never saw data: an identity-ish grid, like torch.ao
            shape = () if self.scheme.granularity == "per_tensor" else (1,)
            return torch.ones(shape), torch.zeros(shape, dtype=torch.int64)
        scale, zero_point = self.observer.qparams(self.scheme)
        return scale.float(), zero_point.to(torch.int64)

    def extra_repr(self) -> str:
        return f"{self.method}, {self.scheme.describe()}"


class CoreFakeQuantize(_FakeQuantizeBase):
    """A torch.ao fake-quant module running :class:`quantlens.nn.FakeQuantize` (STE)."""

    def __init__(
        self,
        observer: str = "moving_average",
        dtype: torch.dtype = torch.quint8,
        qscheme: torch.qscheme = torch.per_tensor_affine,
        quant_min: int | None = None,
        quant_max: int | None = None,
        ch_axis: int = 0,
        reduce_range: bool = False,
        track: Track = "running",
        factory_kwargs: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__()
        self.dtype, self.is_dynamic = dtype, False
        scheme = _take_range_args(self, dtype, qscheme, quant_min, quant_max, ch_axis, reduce_range)
        self.fq = FakeQuantize(scheme, observer, track=track, **kwargs)
        # torch.ao reads the range attributes of a fake-quant's observer when checking backends
        self.activation_post_process = types.SimpleNamespace(
            dtype=dtype,
            qscheme=qscheme,
            quant_min=self.quant_min,
            quant_max=self.quant_max,
            ch_axis=ch_axis,
            eps=torch.tensor([torch.finfo(torch.float32).eps]),
            is_dynamic=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fq.observe_enabled = bool(self.observer_enabled[0])
        self.fq.quantize_enabled = bool(self.fake_quant_enabled[0])
        return self.fq(x)

    def sync(self, *, timeout: float | None = None) -> None:
        """Make this range identical on every rank (a collective; nothing outside a group):
        see :meth:`quantlens.nn.FakeQuantize.sync`."""
        self.fq.observe_enabled = bool(self.observer_enabled[0])
        self.fq.sync(timeout=timeout)

    @torch.jit.export
    def calculate_qparams(self):  # type: ignore[override]  # TorchScript: no **kwargs
        scale, zero_point = self.fq.qparams()
        if self.fq.axis is None:
            return scale.reshape(()), zero_point.reshape(())
        return scale, zero_point

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A freshly prepared model loading a trained one's ``state_dict``: per-channel
        scales take their trained shape, and a loaded activation range (per tensor, kept
        across batches) seeds the observer, so training goes on from it."""
        scale, zero_point = (
            state_dict.get(f"{prefix}fq.scale"),
            state_dict.get(f"{prefix}fq.zero_point"),
        )
        if isinstance(scale, torch.Tensor) and isinstance(zero_point, torch.Tensor):
            self.fq.scale.resize_(scale.shape)
            self.fq.zero_point.resize_(zero_point.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if not isinstance(scale, torch.Tensor) or (
            scale.numel() == 1 and float(scale) == 1.0 and int(zero_point) == 0
        ):
            return  # never observed (the initial scale 1, zero point 0)
        self.fq.observed = True
        if self.fq.axis is None and self.fq.track == "running":
            scheme, s, z = self.fq.scheme, float(scale), int(zero_point)
            self.fq.observer = get_observer(
                self.fq.observer_name, axis=None, **self.fq.observer_kwargs
            )
            self.fq.observer.update(torch.tensor([(scheme.qmin - z) * s, (scheme.qmax - z) * s]))


# --- qconfigs --------------------------------------------------------------------------------


def make_qconfig(
    backend: str,
    *,
    observer: str = "mse",
    weight_observer: str = "minmax",
    per_channel: bool = True,
    weight_bits: int = 8,
    qat: bool = False,
    observer_kwargs: dict | None = None,
):
    """A torch.ao ``QConfig``: uint8 per-tensor activations, signed symmetric weights.

    Args:
        backend: one of :data:`BACKENDS` (decides ``reduce_range``).
        observer: quantlens observer for activations.
        weight_observer: quantlens observer for weights (QAT weights always track the
            current weights, see :class:`quantlens.nn.FakeQuantize`).
        per_channel: one weight scale per output channel.
        weight_bits: 2..8; values below 8 are stored in int8 but use ``2**bits`` levels.
        qat: fake-quant modules (for training) instead of observers.
    """
    ao = tq()
    act_min, act_max = _default_range(torch.quint8, REDUCE_RANGE[backend])
    w_max = (1 << (weight_bits - 1)) - 1
    w_qscheme = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    kwargs = dict(observer_kwargs or {})
    common_w = {
        "dtype": torch.qint8,
        "qscheme": w_qscheme,
        "quant_min": -w_max - 1,
        "quant_max": w_max,
        "ch_axis": 0,
    }
    common_a = {
        "dtype": torch.quint8,
        "qscheme": torch.per_tensor_affine,
        "quant_min": act_min,
        "quant_max": act_max,
    }
    if qat:
        activation = CoreFakeQuantize.with_args(observer=observer, **common_a, **kwargs)
        weight = CoreFakeQuantize.with_args(observer=weight_observer, track="current", **common_w)
    else:
        activation = CoreObserver.with_args(method=observer, **common_a, **kwargs)
        weight = CoreObserver.with_args(method=weight_observer, **common_w)
    return ao.QConfig(activation=activation, weight=weight)


def make_qconfig_mapping(
    backend: str,
    qconfig: QConfig | None,
    module_qconfigs: Sequence[tuple[str, QConfig | None]] = (),
    *,
    qat: bool = False,
):
    """A ``QConfigMapping`` using ``qconfig`` everywhere torch.ao's default uses its default
    (fixed-qparams ops such as sigmoid keep their fixed observers), with per-module entries
    ``(name, qconfig_or_None)`` applied on top (None keeps the module in float)."""
    with quiet():
        from torch.ao.quantization.qconfig_mapping import (
            _get_default_qconfig_mapping_with_default_qconfig,
        )

        # qconfig None: everything in float but the modules the entries name
        mapping = _get_default_qconfig_mapping_with_default_qconfig(
            qat, backend, cast("QConfig", qconfig)
        )
        if qconfig is not None and backend in (
            "x86",
            "fbgemm",
        ):  # no per-channel transposed convs there
            per_tensor = tq().QConfig(
                activation=qconfig.activation, weight=_per_tensor(qconfig.weight)
            )
            for cls in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
                mapping.set_object_type(cls, per_tensor)
        for name, sub in module_qconfigs:
            mapping.set_module_name(name, sub)
    return mapping


def _per_tensor(factory):
    keywords = dict(getattr(factory, "p", factory).keywords)
    keywords["qscheme"] = torch.per_tensor_symmetric
    cls = getattr(factory, "p", factory).func
    return cls.with_args(**keywords)
