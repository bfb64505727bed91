"""The torch.ao.quantization backend: every call into torch.ao lives in this module.

torch.ao.quantization is deprecated upstream (torchao's PT2E flow is the named successor),
so quantlens keeps it behind this one module: methods build qconfigs, prepare, convert and
pick engines only through the functions here, and users never see torch.ao's deprecation
warnings (every call runs inside :func:`quiet`).

Tested on torch 2.13.0 (CPU build). The private helper used here
(``_get_default_qconfig_mapping_with_default_qconfig``) has kept its signature since 2.0.

What it provides:

- :func:`use_engine`: set ``torch.backends.quantized.engine`` for a quantlens backend name,
  with a clear :class:`BackendError` listing the engines this machine has;
- :class:`CoreObserver` / :class:`CoreFakeQuantize`: torch.ao observer and fake-quant
  adapters that delegate to ``quantlens.core.observers`` and ``quantlens.nn.FakeQuantize``,
  so ``observer="mse" | "percentile" | "entropy" | ...`` uses quantlens' own range estimators;
- :func:`make_qconfig` / :func:`make_qconfig_mapping`: per-backend qconfigs (uint8
  activations per tensor, int8 symmetric weights per channel; ``reduce_range`` where the
  backend's kernels need it);
- :func:`prepare` / :func:`convert`: FX graph mode (``prepare_fx`` / ``prepare_qat_fx`` /
  ``convert_fx``) with float islands for non-traceable modules, plus :func:`eager_prepare`
  / :func:`eager_convert` for the layer-wise eager fallback.
"""

from __future__ import annotations

import contextlib
import types
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from quantlens.core.observers import get_observer
from quantlens.core.scheme import QScheme
from quantlens.errors import BackendError, UnknownNameError
from quantlens.nn.fake_quant import FakeQuantize

TESTED_TORCH_VERSIONS = ("2.13.0",)
BACKENDS = ("x86", "fbgemm", "onednn", "qnnpack")
# fbgemm/x86 kernels accumulate uint8 x int8 pairs in int16 on CPUs without VNNI; PyTorch's
# defaults give their activations 7 bits (reduce_range) to avoid the overflow.
_REDUCE_RANGE = {"x86": True, "fbgemm": True, "onednn": False, "qnnpack": False}


@contextlib.contextmanager
def quiet():
    """Silence torch.ao's deprecation and migration warnings inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*")
        warnings.filterwarnings("ignore", message=r".*(reduce_range|quantized engine|TypedStorage).*")
        yield


def _tq():
    with quiet():
        import torch.ao.quantization as tq
    return tq


# --- engines ---------------------------------------------------------------------------------


def available_engines() -> list[str]:
    """The quantized engines this PyTorch build and CPU support (``"none"`` left out)."""
    return [e for e in torch.backends.quantized.supported_engines if e != "none"]


def use_engine(backend: str) -> str:
    """Set ``torch.backends.quantized.engine`` for ``backend`` and return the engine name.

    Raises:
        UnknownNameError: ``backend`` is not one of :data:`BACKENDS`.
        BackendError: this machine's PyTorch lacks the engine.

    Example:
        >>> use_engine("qnnpack"); torch.backends.quantized.engine
        'qnnpack'
    """
    if backend not in BACKENDS:
        raise UnknownNameError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    engines = available_engines()
    if backend not in engines:
        raise BackendError(
            f"the quantized engine {backend!r} is not available on this machine (it has: "
            f"{', '.join(engines) or 'none'}); pick one of those with backend=..."
        )
    if torch.backends.quantized.engine != backend:
        torch.backends.quantized.engine = backend
    return backend


# --- observers and fake quantization backed by quantlens.core -------------------------------


def _scheme(dtype: torch.dtype, qscheme: torch.qscheme, quant_min: int, quant_max: int, ch_axis: int) -> QScheme:
    levels = quant_max - quant_min + 1
    bits = levels.bit_length() - 1
    if 1 << bits != levels:
        raise BackendError(f"quant range [{quant_min}, {quant_max}] is not a power-of-two number of levels")
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


def _observer_base():
    with quiet():
        from torch.ao.quantization.fake_quantize import FakeQuantizeBase
        from torch.ao.quantization.observer import ObserverBase
    return ObserverBase, FakeQuantizeBase


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
        if quant_min is None or quant_max is None:
            quant_min, quant_max = _default_range(dtype, reduce_range)
        self.method, self.qscheme, self.ch_axis = method, qscheme, ch_axis
        self.quant_min, self.quant_max = quant_min, quant_max
        self.scheme = _scheme(dtype, qscheme, quant_min, quant_max, ch_axis)
        axis = ch_axis if self.scheme.granularity == "per_channel" else None
        self.observer = get_observer(method, axis=axis, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel():
            self.observer.update(x.detach().float())
        return x

    @torch.jit.export
    def calculate_qparams(self):
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
        track: str = "running",
        factory_kwargs: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__()
        if quant_min is None or quant_max is None:
            quant_min, quant_max = _default_range(dtype, reduce_range)
        self.dtype, self.qscheme, self.ch_axis = dtype, qscheme, ch_axis
        self.quant_min, self.quant_max, self.is_dynamic = quant_min, quant_max, False
        self.fq = FakeQuantize(_scheme(dtype, qscheme, quant_min, quant_max, ch_axis), observer, track=track, **kwargs)
        # torch.ao reads the range attributes of a fake-quant's observer when checking backends
        self.activation_post_process = types.SimpleNamespace(
            dtype=dtype, qscheme=qscheme, quant_min=quant_min, quant_max=quant_max, ch_axis=ch_axis,
            eps=torch.tensor([torch.finfo(torch.float32).eps]), is_dynamic=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fq.observe_enabled = bool(self.observer_enabled[0])
        self.fq.quantize_enabled = bool(self.fake_quant_enabled[0])
        return self.fq(x)

    @torch.jit.export
    def calculate_qparams(self):
        scale, zero_point = self.fq.qparams()
        if self.fq.axis is None:
            return scale.reshape(()), zero_point.reshape(())
        return scale, zero_point


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
    tq = _tq()
    act_min, act_max = _default_range(torch.quint8, _REDUCE_RANGE[backend])
    w_max = (1 << (weight_bits - 1)) - 1
    w_qscheme = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    kwargs = dict(observer_kwargs or {})
    common_w = {"dtype": torch.qint8, "qscheme": w_qscheme, "quant_min": -w_max - 1, "quant_max": w_max, "ch_axis": 0}
    common_a = {"dtype": torch.quint8, "qscheme": torch.per_tensor_affine, "quant_min": act_min, "quant_max": act_max}
    if qat:
        activation = CoreFakeQuantize.with_args(observer=observer, **common_a, **kwargs)
        weight = CoreFakeQuantize.with_args(observer=weight_observer, track="current", **common_w)
    else:
        activation = CoreObserver.with_args(method=observer, **common_a, **kwargs)
        weight = CoreObserver.with_args(method=weight_observer, **common_w)
    return tq.QConfig(activation=activation, weight=weight)


def make_qconfig_mapping(backend: str, qconfig, module_qconfigs: Sequence[tuple[str, object]] = (), *, qat: bool = False):
    """A ``QConfigMapping`` using ``qconfig`` everywhere torch.ao's default uses its default
    (fixed-qparams ops such as sigmoid keep their fixed observers), with per-module entries
    ``(name, qconfig_or_None)`` applied on top (None keeps the module in float)."""
    with quiet():
        from torch.ao.quantization.qconfig_mapping import (
            _get_default_qconfig_mapping_with_default_qconfig,
        )

        mapping = _get_default_qconfig_mapping_with_default_qconfig(qat, backend, qconfig)
        if qconfig is not None and backend in ("x86", "fbgemm"):  # no per-channel transposed convs there
            per_tensor = _tq().QConfig(activation=qconfig.activation, weight=_per_tensor(qconfig.weight))
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


# --- FX graph mode ---------------------------------------------------------------------------


def _backend_config(backend: str):
    with quiet():
        from torch.ao.quantization import backend_config as bc
        from torch.ao.quantization.backend_config.x86 import get_x86_backend_config

        return {"x86": get_x86_backend_config, "onednn": bc.get_onednn_backend_config}.get(
            backend, bc.get_native_backend_config
        )()


def find_untraceable(model: nn.Module, leaves: Iterable[str] = ()) -> dict[str, str]:
    """Modules whose own ``forward`` torch.fx cannot trace: ``{name: error}``.

    Searches bottom-up: a module is reported only if it still fails with its untraceable
    children treated as leaves, so the report names the smallest culprits. The root is
    reported under ``""``. ``leaves`` are module names already kept out of tracing.
    """
    found: dict[str, str] = {}
    given = set(leaves)

    def visit(module: nn.Module, prefix: str) -> None:
        name = prefix.rstrip(".")
        if name in given or (name and torch.fx.Tracer().is_leaf_module(module, name)):
            return  # torch.nn's own layers are never traced into
        for name, child in module.named_children():
            visit(child, f"{prefix}{name}.")
        ids = {id(m) for n, m in model.named_modules() if n in found or n in given}
        error = _trace_error(module, ids)
        if error is not None:
            found[prefix.rstrip(".")] = error

    visit(model, "")
    return found


def _trace_error(module: nn.Module, leaves: set[int]) -> str | None:
    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return id(m) in leaves or super().is_leaf_module(m, qualname)

    try:
        _Tracer().trace(module)
    except Exception as exc:  # noqa: BLE001 - tracing fails with many exception types
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    return None


def prepare(
    model: nn.Module,
    mapping,
    example_inputs: tuple,
    *,
    backend: str,
    qat: bool = False,
    leaf_names: Iterable[str] = (),
    custom_modules: Iterable[tuple[type, type, type]] = (),
) -> torch.fx.GraphModule:
    """FX-prepare ``model``: insert observers (or fake quantization for ``qat``), fuse.

    Args:
        mapping: from :func:`make_qconfig_mapping`.
        example_inputs: a tuple of example positional inputs.
        leaf_names: modules not traced into (float islands or untraceable code).
        custom_modules: ``(float_cls, observed_cls, quantized_cls)`` user replacements.
    """
    with quiet():
        from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
        from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

        custom = PrepareCustomConfig().set_non_traceable_module_names(list(leaf_names))
        for float_cls, observed_cls, _ in custom_modules:
            custom.set_float_to_observed_mapping(float_cls, observed_cls)
        model.train(qat)
        fn = prepare_qat_fx if qat else prepare_fx
        return fn(model, mapping, example_inputs, prepare_custom_config=custom, backend_config=_backend_config(backend))


def convert(model: torch.fx.GraphModule, *, backend: str, custom_modules: Iterable[tuple[type, type, type]] = ()) -> nn.Module:
    """``convert_fx``: observers become quantize/dequantize, modules quantized kernels."""
    with quiet():
        from torch.ao.quantization.fx.custom_config import ConvertCustomConfig
        from torch.ao.quantization.quantize_fx import convert_fx

        custom = ConvertCustomConfig()
        for _, observed_cls, quantized_cls in custom_modules:
            custom.set_observed_to_quantized_mapping(observed_cls, quantized_cls)
        model.eval()
        out = convert_fx(model, convert_custom_config=custom, backend_config=_backend_config(backend))
    return out.eval()


def is_quantized_module(module: nn.Module) -> bool:
    """True for modules of torch's quantized kernels (static or dynamic)."""
    return type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))


def freeze_bn(model: nn.Module) -> None:
    """Stop updating BatchNorm statistics in fused QAT modules (and plain BatchNorms)."""
    with quiet():
        from torch.ao.nn.intrinsic import qat as nniqat

        model.apply(nniqat.freeze_bn_stats)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def freeze_observers(model: nn.Module) -> None:
    """Freeze activation ranges (weight ranges keep following the weights)."""
    for m in model.modules():
        if isinstance(m, CoreFakeQuantize) and m.fq.track == "running":
            m.disable_observer()


# --- eager mode fallback ---------------------------------------------------------------------

EAGER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def eager_wrap(model: nn.Module, names: Iterable[str]) -> list[str]:
    """Wrap the named Conv/Linear modules in ``QuantStub -> layer -> DeQuantStub``
    (torch.ao ``QuantWrapper``): each becomes an int8 island with float in between."""
    tq = _tq()
    wrapped = []
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, tq.QuantWrapper(getattr(parent, attr)))
        wrapped.append(name)
    return wrapped


def eager_prepare(model: nn.Module, qconfig, names: Iterable[str]) -> nn.Module:
    """Give the wrapped modules ``qconfig`` and insert observers (in place)."""
    tq = _tq()
    with quiet():
        for name in names:
            model.get_submodule(name).qconfig = qconfig
        model.eval()
        return tq.prepare(model, inplace=True)


def eager_convert(model: nn.Module) -> nn.Module:
    """Swap observed modules for quantized ones (in place)."""
    with quiet():
        return _tq().convert(model.eval(), inplace=True)



# --- dynamic ---------------------------------------------------------------------------------
# Dynamic LSTM / GRU for quantlens.methods.dynamic: torch.ao's DynamicQuantizedLSTM / GRU
# (int8 or fp16 weights packed for fbgemm/qnnpack, activations quantized per step).
# Their packed weights are ScriptObjects; dynamic_rnn_weights / dynamic_rnn_set_weights move
# them to and from plain tensors so checkpoints stay pickle-free.


def _dynamic_rnn_classes() -> dict[type, type]:
    with quiet():
        import torch.ao.nn.quantized.dynamic as nnqd
    return {nn.LSTM: nnqd.LSTM, nn.GRU: nnqd.GRU}


def dynamic_rnn_from_float(module: nn.Module, *, dtype: str, per_channel: bool) -> nn.Module:
    """torch.ao's dynamic LSTM/GRU holding ``module``'s weights (``dtype`` "int8" | "float16")."""
    tq = _tq()
    if dtype == "float16":
        qconfig = tq.float16_dynamic_qconfig
    else:
        qconfig = tq.per_channel_dynamic_qconfig if per_channel else tq.default_dynamic_qconfig
    module.qconfig = qconfig
    try:
        with quiet():
            return _dynamic_rnn_classes()[type(module)].from_float(module)
    finally:
        del module.qconfig


def dynamic_rnn_empty(module: nn.Module, *, dtype: str) -> nn.Module:
    """An untrained torch.ao dynamic LSTM/GRU with ``module``'s shape, for loading weights into."""
    cls = _dynamic_rnn_classes()[type(module)]
    with quiet():
        return cls(module.input_size, module.hidden_size, module.num_layers, module.bias, module.batch_first,
                   float(module.dropout), module.bidirectional,
                   dtype=torch.qint8 if dtype == "int8" else torch.float16)


def dynamic_rnn_weights(qrnn: nn.Module) -> dict[str, torch.Tensor]:
    """The weights and biases of a torch.ao dynamic RNN as plain tensors.

    int8 weights ``weight_ih_l0`` become ``weight_ih_l0`` (int8 codes), ``..._scale``
    (float64, per channel) and ``..._zero_point`` (int64); fp16 weights stay fp16.
    """
    with quiet():
        wb = qrnn._weight_bias()
    out: dict[str, torch.Tensor] = {}
    for name, w in wb["weight"].items():
        if w.is_quantized:
            out[name] = w.int_repr()
            out[name + "_scale"] = w.q_per_channel_scales() if w.qscheme() == torch.per_channel_affine \
                else torch.tensor([w.q_scale()], dtype=torch.float64)
            out[name + "_zero_point"] = w.q_per_channel_zero_points() if w.qscheme() == torch.per_channel_affine \
                else torch.tensor([w.q_zero_point()], dtype=torch.int64)
        else:
            out[name] = w.to(torch.float16)
    out.update({name: b for name, b in wb["bias"].items() if b is not None})
    return out


def dynamic_rnn_set_weights(qrnn: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load :func:`dynamic_rnn_weights` output back into ``qrnn`` (repacks its weights)."""
    weights, biases = {}, {}
    for name, t in tensors.items():
        if name.startswith("bias_"):
            biases[name] = t
        elif name.startswith("weight_") and not name.endswith(("_scale", "_zero_point")):
            if t.dtype == torch.int8:
                scale, zp = tensors[name + "_scale"], tensors[name + "_zero_point"]
                with quiet():
                    if scale.numel() == 1:
                        t = torch._make_per_tensor_quantized_tensor(t, scale.item(), int(zp.item()))
                    else:
                        t = torch._make_per_channel_quantized_tensor(t, scale, zp, 0)
            else:
                t = t.float()
            weights[name] = t
    with quiet():
        qrnn.set_weight_bias({**weights, **{n: biases.get(n) for n in
                                            [w.replace("weight_", "bias_", 1) for w in weights]}})
