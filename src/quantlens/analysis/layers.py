"""Layer-by-layer error: run the float and the quantized model side by side and compare
every matched layer's output and weight.

Layers are matched by module name. Quantizers rename or fuse modules, so matching is best
effort and says what it could not match:

- fused modules (graph-mode Static/QAT fuse ``Conv -> BatchNorm -> ReLU`` into the module
  named after the Conv, e.g. ``"stem.0"``): the quantized output is compared with the float
  output of the last module fused into it (``"stem.2"``), and its weight with the float
  weight with the BatchNorm folded in;
- wrapped modules (the eager fallback names a Conv ``"<name>.module"``): the suffix is dropped;
- layers found on one side only are listed in :attr:`LayerComparison.unmatched`.

Each layer also gets the SQNR of its *input* (the error it inherited) and the SQNR of the
noise it adds itself, ``own_sqnr_db``: with relative noise powers ``n = 10^(-SQNR/10)``,
``own = -10 log10(n_out - n_in)`` (noise from independent sources adds in power). The
quantized layer with the lowest ``own_sqnr_db`` is where the error jumps
(:attr:`LayerComparison.jump`); float layers (a BatchNorm after a quantized conv) can scale
the relative noise they inherit but are not blamed for it.

Example:
    >>> qm = ql.quantize(model, ql.Static(), calib_data=calib)
    >>> result = ql.analysis.compare_layers(model, qm, test.inputs[:64])
    >>> print(result)                     # a table, the jump marked with "<-"
    >>> result.jump.name
    'block2.conv2'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from quantlens.core.data import iter_batches
from quantlens.core.metrics import max_abs_error, mse
from quantlens.errors import InputError
from quantlens.methods.fusion import fold_bn_params

__all__ = ["LayerComparison", "LayerError", "compare_layers", "dequantized_weight", "is_layer"]

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU)
_WRAPPER_SUFFIXES = (".module", "._orig_mod")


# --- what a layer is and what its weight is -------------------------------------------------


def dequantized_weight(module: nn.Module) -> torch.Tensor | None:
    """The float weight a (quantized or float) layer computes with, or None if it has none.

    Handles quantlens' packed layers (``dequantized_weight()``), PyTorch's quantized modules
    (``weight()`` returning a quantized tensor), fake-quant (QAT) modules
    (``weight_fake_quant(weight)``) and plain float layers.
    """
    with torch.no_grad():
        if callable(getattr(module, "dequantized_weight", None)):
            return module.dequantized_weight().float()
        weight = getattr(module, "weight", None)
        if callable(weight) and not isinstance(weight, torch.Tensor):
            try:
                weight = weight()
            except (RuntimeError, TypeError):
                return None
        if not isinstance(weight, torch.Tensor):
            return None
        if weight.is_quantized:
            return weight.dequantize().float()
        fake = getattr(module, "weight_fake_quant", None)
        if callable(fake):
            weight = fake(weight)
        return weight.detach().float()


def is_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a layer with a weight (float, quantized or fake-quantized)."""
    return callable(getattr(module, "dequantized_weight", None)) or getattr(module, "weight", None) is not None


def first_tensor(value) -> torch.Tensor | None:
    """The first tensor in a module's inputs or outputs (``last_hidden_state`` of HF outputs)."""
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "last_hidden_state"):
        return value.last_hidden_state
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def as_float(t: torch.Tensor | None) -> torch.Tensor | None:
    """A detached float copy of ``t`` (quantized tensors dequantized), None if not floating."""
    if t is None:
        return None
    t = t.dequantize() if t.is_quantized else t
    return t.detach().float().clone() if t.is_floating_point() else None


# --- results ------------------------------------------------------------------------------


@dataclass
class LayerError:
    """The error of one matched layer (SQNR in dB, higher is better; ``inf`` = exact).

    Attributes:
        name: the layer's name in the quantized model.
        kind: its class there (``"QLinear"``, ``"ConvReLU2d"``, ...).
        float_name: the float module whose output it is compared with (differs when fused).
        in_sqnr_db: SQNR of its input: the error it inherited.
        out_sqnr_db, out_cosine, out_max_abs: its output against the float output.
        own_sqnr_db: SQNR of the noise it adds itself (see the module docstring).
        weight_sqnr_db, weight_cosine, weight_max_abs: its dequantized weight against the
            float weight (None when it has none or the shapes differ).
        jump: True for the layer whose own quantization costs most.
    """

    name: str
    kind: str
    float_name: str
    in_sqnr_db: float
    out_sqnr_db: float
    out_cosine: float
    out_max_abs: float
    own_sqnr_db: float
    weight_sqnr_db: float | None = None
    weight_cosine: float | None = None
    weight_max_abs: float | None = None
    jump: bool = False

    @property
    def drop_db(self) -> float:
        """SQNR lost between its input and its output (``in - out``; ``inf`` inputs count as 150 dB)."""
        return min(self.in_sqnr_db, 150.0) - min(self.out_sqnr_db, 150.0)


@dataclass
class LayerComparison:
    """What :func:`compare_layers` found, layers in the float model's execution order.

    Attributes:
        layers: one :class:`LayerError` per matched layer.
        unmatched: ``{name: why}`` for layers found on one side only.
        fused: ``{quantized layer: [float modules fused into it]}``.
        samples: number of samples compared.
    """

    layers: list[LayerError]
    unmatched: dict[str, str] = field(default_factory=dict)
    fused: dict[str, list[str]] = field(default_factory=dict)
    samples: int = 0

    @property
    def jump(self) -> LayerError | None:
        """The layer whose own quantization costs most (lowest ``own_sqnr_db``)."""
        return next((layer for layer in self.layers if layer.jump), None)

    def __getitem__(self, name: str) -> LayerError:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"layers": [asdict(x) for x in self.layers], "unmatched": dict(self.unmatched),
                "fused": {k: list(v) for k, v in self.fused.items()}, "samples": self.samples,
                "jump": self.jump.name if self.jump else None}

    def __str__(self) -> str:
        def f(v):
            return "-" if v is None else ("inf" if v == math.inf else f"{v:.1f}")

        head = f"{'layer':<32} {'kind':<16} {'in dB':>7} {'out dB':>7} {'own dB':>7} {'cos':>7} {'w dB':>7}"
        lines = [head]
        for x in self.layers:
            mark = "  <- error jumps here" if x.jump else ""
            lines.append(f"{x.name[:32]:<32} {x.kind[:16]:<16} {f(x.in_sqnr_db):>7} {f(x.out_sqnr_db):>7} "
                         f"{f(x.own_sqnr_db):>7} {x.out_cosine:>7.4f} {f(x.weight_sqnr_db):>7}{mark}")
        for name, why in self.unmatched.items():
            lines.append(f"unmatched {name}: {why}")
        return "\n".join(lines)


# --- matching ------------------------------------------------------------------------------


def _float_name(qname: str, float_modules: dict[str, nn.Module]) -> str | None:
    if qname in float_modules:
        return qname
    for suffix in _WRAPPER_SUFFIXES:
        if qname.endswith(suffix) and qname[: -len(suffix)] in float_modules:
            return qname[: -len(suffix)]
    return None


def execution_order(model: nn.Module, batch) -> list[str]:
    """Names of the leaf modules of ``model`` in the order one forward on ``batch`` calls them."""
    order: list[str] = []
    handles = [m.register_forward_hook(lambda mod, a, o, n=name: order.append(n))
               for name, m in model.named_modules() if name and not list(m.children())]
    try:
        with torch.no_grad():
            batch.run(model)
    finally:
        for h in handles:
            h.remove()
    seen: set[str] = set()
    return [n for n in order if not (n in seen or seen.add(n))]


def fused_followers(name: str, order: list[str], modules: dict[str, nn.Module], stop, *,
                    activations: bool = True) -> list[str]:
    """The BatchNorms (and activations) that run right after ``name`` in ``order`` (leaf
    modules in execution order), up to the first name in ``stop``: what a graph-mode
    quantizer fuses into the layer ``name``."""
    if name not in order:
        return []
    out = []
    for nxt in order[order.index(name) + 1:]:
        mod = modules[nxt]
        if nxt in stop:
            break
        if isinstance(mod, _BATCHNORMS) or (activations and isinstance(mod, _ACTIVATIONS)):
            out.append(nxt)
            continue
        break
    return out


def _float_weight(fname: str, absorbed: list[str], float_modules) -> torch.Tensor | None:
    module = float_modules[fname]
    weight = dequantized_weight(module)
    bns = [float_modules[n] for n in absorbed if isinstance(float_modules[n], _BATCHNORMS)]
    if weight is not None and bns:
        weight, _ = fold_bn_params(weight, getattr(module, "bias", None), bns[0])
    return weight


# --- accumulation ------------------------------------------------------------------------


class _Acc:
    """Streaming sums for SQNR / cosine / max error of one tensor pair over batches."""

    def __init__(self) -> None:
        self.ref = self.approx = self.err = 0.0
        self.max_abs = 0.0

    def add(self, ref: torch.Tensor, approx: torch.Tensor) -> None:
        n = ref.numel()
        self.ref += mse(ref, torch.zeros_like(ref)) * n
        self.approx += mse(approx, torch.zeros_like(approx)) * n
        self.err += mse(ref, approx) * n
        self.max_abs = max(self.max_abs, max_abs_error(ref, approx))

    def sqnr(self) -> float:
        if self.err == 0.0:
            return math.inf
        return -math.inf if self.ref == 0.0 else 10.0 * math.log10(self.ref / self.err)

    def cosine(self) -> float:
        if self.ref == 0.0 or self.approx == 0.0:
            return 1.0 if self.ref == self.approx else 0.0
        dot = (self.ref + self.approx - self.err) / 2.0
        return max(-1.0, min(1.0, dot / math.sqrt(self.ref * self.approx)))


def _own_sqnr(in_db: float, out_db: float) -> float:
    noise_in = 0.0 if in_db == math.inf else 10.0 ** (-in_db / 10.0)
    noise_out = 0.0 if out_db == math.inf else 10.0 ** (-out_db / 10.0)
    added = noise_out - noise_in
    return math.inf if added <= 0 else -10.0 * math.log10(added)


def _hook_all(model: nn.Module, names: dict[str, str], store: dict) -> list:
    """Record ``(input, output)`` of the modules in ``names`` (module name -> key in store)."""

    def hook(module, args, output, key):
        store.setdefault(key, [None, None])
        if key.startswith("in:"):
            store[key][0] = as_float(first_tensor(args))
        else:
            store[key][1] = as_float(first_tensor(output))

    modules = dict(model.named_modules())
    return [modules[n].register_forward_hook(lambda m, a, o, k=k: hook(m, a, o, k)) for n, k in names.items()]


def compare_layers(float_model: nn.Module, q_model: nn.Module, inputs, *, max_batches: int | None = 4) -> LayerComparison:
    """Compare every matched layer of ``q_model`` with ``float_model`` on ``inputs``.

    Args:
        float_model: the float original (left unchanged).
        q_model: its quantized version (weight-only, dynamic, static, QAT, prepared or
            converted).
        inputs: any form :func:`quantlens.core.data.iter_batches` accepts.
        max_batches: use at most this many batches (None: all).

    Returns:
        A :class:`LayerComparison`: per-layer output/weight SQNR, cosine, max abs error,
        inherited vs own error, the layer where the error jumps, and what was not matched.

    Raises:
        InputError: no layer could be matched by name.

    Example:
        >>> result = compare_layers(model, ql.quantize(model, ql.WeightOnly(bits=4)), x)
        >>> [(l.name, round(l.out_sqnr_db, 1)) for l in result.layers][:2]
    """
    float_modules = dict(float_model.named_modules())
    q_modules = dict(q_model.named_modules())
    q_names = set(q_modules)
    batches = list(iter_batches(inputs, limit=max_batches))
    if not batches:
        raise InputError("compare_layers got no batch; pass at least one batch of inputs")
    order = execution_order(float_model, batches[0])
    rank = {n: i for i, n in enumerate(order)}

    pairs: dict[str, tuple[str, list[str]]] = {}  # q name -> (float name, absorbed)
    unmatched: dict[str, str] = {}
    for qname, qmod in q_modules.items():
        if not qname or not is_layer(qmod) or any(qname.startswith(p + ".") for p in pairs):
            continue
        fname = _float_name(qname, float_modules)
        if fname is None:
            unmatched[qname] = "in the quantized model only (no float module of that name)"
            continue
        relu = "relu" in type(qmod).__name__.lower()
        pairs[qname] = (fname, fused_followers(fname, order, float_modules, q_names, activations=relu))
    covered = {f for f, _ in pairs.values()} | {a for _, ab in pairs.values() for a in ab}
    for fname, fmod in float_modules.items():
        if fname and is_layer(fmod) and fname not in covered and not any(
                fname.startswith(f + ".") for f in covered):
            unmatched[fname] = "in the float model only (removed or renamed by quantization)"
    for qname in [q for q, (f, _) in pairs.items() if f not in rank]:
        unmatched[qname] = "not called by the forward pass"
        del pairs[qname]

    accs = {q: (_Acc(), _Acc()) for q in pairs}
    samples = 0
    with torch.no_grad():
        for batch in batches:
            f_store: dict = {}
            q_store: dict = {}
            f_hooks = {}
            q_hooks = {}
            for qname, (fname, absorbed) in pairs.items():
                f_hooks[(absorbed[-1] if absorbed else fname)] = f"out:{qname}"
                q_hooks[qname] = f"out:{qname}"
            handles = _hook_all(float_model, f_hooks, f_store)
            handles += _hook_all(float_model, {f: f"in:{q}" for q, (f, _) in pairs.items()}, f_store)
            handles += _hook_all(q_model, q_hooks, q_store)
            handles += _hook_all(q_model, {q: f"in:{q}" for q in pairs}, q_store)
            try:
                batch.run(float_model)
                batch.run(q_model)
            finally:
                for h in handles:
                    h.remove()
            samples += batch.size
            for qname in pairs:
                for i, key in ((0, f"in:{qname}"), (1, f"out:{qname}")):
                    ref = f_store.get(key, [None, None])[i]
                    got = q_store.get(key, [None, None])[i]
                    if ref is not None and got is not None and ref.shape == got.shape:
                        accs[qname][i].add(ref, got)

    layers = []
    fused = {}
    for qname, (fname, absorbed) in sorted(pairs.items(), key=lambda kv: rank[kv[1][0]]):
        acc_in, acc_out = accs[qname]
        if acc_out.ref == 0.0 and acc_out.err == 0.0 and acc_out.max_abs == 0.0 and acc_out.approx == 0.0:
            unmatched.setdefault(qname, "outputs not comparable (shapes differ or not float)")
            continue
        if absorbed:
            fused[qname] = absorbed
        in_db, out_db = acc_in.sqnr(), acc_out.sqnr()
        row = LayerError(qname, type(q_modules[qname]).__name__, absorbed[-1] if absorbed else fname,
                         in_db, out_db, acc_out.cosine(), acc_out.max_abs, _own_sqnr(in_db, out_db))
        w_ref = _float_weight(fname, absorbed, float_modules)
        w_q = dequantized_weight(q_modules[qname])
        if w_ref is not None and w_q is not None and w_ref.shape == w_q.shape:
            wacc = _Acc()
            wacc.add(w_ref, w_q)
            row.weight_sqnr_db, row.weight_cosine, row.weight_max_abs = wacc.sqnr(), wacc.cosine(), wacc.max_abs
        layers.append(row)
    if not layers:
        raise InputError("no layer of the quantized model matches a float module by name; "
                         "pass the float model that q_model was quantized from")
    quantized = [x for x in layers if x.weight_sqnr_db not in (None, math.inf)
                 or x.kind != type(float_modules[pairs[x.name][0]]).__name__]
    worst = min(quantized or layers, key=lambda x: x.own_sqnr_db)  # float layers only pass error on
    if worst.own_sqnr_db < math.inf:
        worst.jump = True
    return LayerComparison(layers, unmatched, fused, samples)
