"""Layer-by-layer error: run the float and the quantized model side by side and compare
every matched layer's output and weight.

Layers are matched by module name. Quantizers rename or fuse modules, so matching is best
effort and says what it could not match:

- fused modules (graph-mode Static/QAT fuse ``Conv -> BatchNorm -> ReLU`` into the module
  named after the Conv, e.g. ``"stem.0"``): the quantized output is compared with the float
  output of the last module fused into it (``"stem.2"``), and its weight with the float
  weight with the BatchNorm folded in (a prepared QAT ``ConvBn*`` module's weight is folded
  with its own BatchNorm before it is fake-quantized, as its forward does);
- wrapped modules (the eager fallback names a Conv ``"<name>.module"``): the suffix is dropped;
- layers found on one side only are listed in :attr:`LayerComparison.unmatched`.

Two errors per layer:

- *accumulated* (``out_sqnr_db``): the quantized model's output of the layer against the
  float model's, so it includes every error inherited from the layers before it
  (``in_sqnr_db`` is the SQNR of its input);
- *own* (``own_sqnr_db``): the layer *isolated*: the quantized layer is fed the float
  model's input to that layer (cached from the float run; quantized with the quantized
  input's scale and zero-point when the kernel takes a quantized tensor) and its output
  compared with the float layer's. It is the error this layer's quantization adds by itself,
  the per-layer error NNCF- and Neural-Compressor-style tools report. Where the layer cannot
  be called alone (several inputs), it is estimated from the noise powers instead,
  ``-10 log10(10^(-out/10) - 10^(-in/10))``, and ``isolated`` is False.

The quantized layer with the lowest own SQNR is where the error jumps
(:attr:`LayerComparison.jump`). Both models run in eval mode and are left as they were
(see :func:`~quantlens.analysis.modules.unchanged`).

Example:
    >>> qm = ql.quantize(model, ql.Static(), calib_data=calib)
    >>> result = ql.analysis.compare_layers(model, qm, test.inputs[:64])
    >>> print(result)                     # a table, the jump marked with "<-"
    >>> result.jump.name
    'block2.conv2'
"""

from __future__ import annotations

import math

import torch
from torch import nn

from quantlens.analysis.layer_results import LayerComparison, LayerError
from quantlens.analysis.modules import (
    as_float,
    dequantized_weight,
    execution_order,
    first_tensor,
    float_weight,
    fused_followers,
    is_layer,
    match_float_name,
    unchanged,
)
from quantlens.core.data import iter_batches
from quantlens.core.metrics import max_abs_error, mse
from quantlens.errors import InputError

__all__ = ["LayerComparison", "LayerError", "compare_layers"]


# --- accumulation ------------------------------------------------------------------------


class _Acc:
    """Streaming sums for SQNR / cosine / max error of one tensor pair over batches."""

    def __init__(self) -> None:
        self.ref = self.approx = self.err = 0.0
        self.max_abs = 0.0
        self.count = 0

    def add(self, ref: torch.Tensor, approx: torch.Tensor) -> None:
        n = ref.numel()
        self.ref += mse(ref, torch.zeros_like(ref)) * n
        self.approx += mse(approx, torch.zeros_like(approx)) * n
        self.err += mse(ref, approx) * n
        self.max_abs = max(self.max_abs, max_abs_error(ref, approx))
        self.count += 1

    def sqnr(self) -> float:
        if self.err == 0.0:
            return math.inf
        return -math.inf if self.ref == 0.0 else 10.0 * math.log10(self.ref / self.err)

    def cosine(self) -> float:
        if self.ref == 0.0 or self.approx == 0.0:
            return 1.0 if self.ref == self.approx else 0.0
        dot = (self.ref + self.approx - self.err) / 2.0
        return max(-1.0, min(1.0, dot / math.sqrt(self.ref * self.approx)))


def _estimated_own_sqnr(in_db: float, out_db: float) -> float:
    """Own noise from the noise powers, when the layer cannot be run alone."""
    noise_in = 0.0 if in_db == math.inf else 10.0 ** (-in_db / 10.0)
    noise_out = 0.0 if out_db == math.inf else 10.0 ** (-out_db / 10.0)
    added = noise_out - noise_in
    return math.inf if added <= 0 else -10.0 * math.log10(added)


# --- matching ------------------------------------------------------------------------------


def _match(
    float_modules, q_modules, order
) -> tuple[dict[str, tuple[str, list[str]]], dict[str, str]]:
    """``{q name: (float name, float modules fused into it)}`` and ``{name: why unmatched}``."""
    rank = {n: i for i, n in enumerate(order)}
    q_names = set(q_modules)
    pairs: dict[str, tuple[str, list[str]]] = {}
    unmatched: dict[str, str] = {}
    for qname, qmod in q_modules.items():
        if not qname or not is_layer(qmod) or any(qname.startswith(p + ".") for p in pairs):
            continue
        fname = match_float_name(qname, float_modules)
        if fname is None:
            unmatched[qname] = "in the quantized model only (no float module of that name)"
            continue
        relu = "relu" in type(qmod).__name__.lower()
        pairs[qname] = (
            fname,
            fused_followers(fname, order, float_modules, q_names, activations=relu),
        )
    covered = {f for f, _ in pairs.values()} | {a for _, ab in pairs.values() for a in ab}
    for fname, fmod in float_modules.items():
        if (
            fname
            and is_layer(fmod)
            and fname not in covered
            and not any(fname.startswith(f + ".") for f in covered)
        ):
            unmatched[fname] = "in the float model only (removed or renamed by quantization)"
    for qname in [q for q, (f, _) in pairs.items() if f not in rank]:
        unmatched[qname] = "not called by the forward pass"
        del pairs[qname]
    return dict(sorted(pairs.items(), key=lambda kv: rank[kv[1][0]])), unmatched


# --- one batch -------------------------------------------------------------------------------


def _record(
    model: nn.Module, where: dict[str, list[str]], store: dict, *, keep_input: bool = False
) -> list:
    """Hooks storing, per module name in ``where``, the float copy of its output under each
    key ``"out:<q>"`` and of its input under ``"in:<q>"``; under ``"arg:<q>"`` the single
    positional input tensor itself (with ``keep_input``) or a copy of it when it is not
    floating point (token ids, which a float copy cannot stand for)."""

    def hook(module, args, output, keys):
        single = args[0] if len(args) == 1 and isinstance(args[0], torch.Tensor) else None
        for key in keys:
            if key.startswith("in:"):
                store[key] = as_float(first_tensor(args))
                if keep_input:
                    store["arg:" + key[3:]] = single
                elif (
                    single is not None
                    and not single.is_floating_point()
                    and not single.is_quantized
                ):
                    store["arg:" + key[3:]] = single.clone()
            else:
                store[key] = as_float(first_tensor(output))

    modules = dict(model.named_modules())
    return [
        modules[n].register_forward_hook(lambda m, a, o, k=tuple(k): hook(m, a, o, k))
        for n, k in where.items()
    ]


def _like(x: torch.Tensor, proto: torch.Tensor) -> torch.Tensor:
    """The float tensor ``x`` in the form the quantized layer received ``proto``: quantized
    with its scale and zero-point when it was a quantized tensor, else in its dtype."""
    if proto.is_quantized:
        if proto.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            raise TypeError("per-channel quantized input")
        return torch.quantize_per_tensor(
            x.float(), proto.q_scale(), proto.q_zero_point(), proto.dtype
        )
    return x.to(proto.dtype)


def _isolated(
    module: nn.Module, f_in: torch.Tensor | None, proto: torch.Tensor | None
) -> torch.Tensor | None:
    """``module``'s output on the float model's input, or None when it cannot run alone."""
    if f_in is None or proto is None or f_in.shape != proto.shape:
        return None
    try:
        return as_float(first_tensor(module(_like(f_in, proto))))
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return None


def _run_batch(fm, qm, q_modules, pairs, batch, accs) -> None:
    f_where: dict[str, list[str]] = {}
    q_where: dict[str, list[str]] = {}
    for qname, (fname, absorbed) in pairs.items():
        f_where.setdefault(absorbed[-1] if absorbed else fname, []).append(f"out:{qname}")
        f_where.setdefault(fname, []).append(f"in:{qname}")
        q_where.setdefault(qname, []).extend((f"out:{qname}", f"in:{qname}"))
    f_store: dict = {}
    q_store: dict = {}
    handles = _record(fm, f_where, f_store) + _record(qm, q_where, q_store, keep_input=True)
    try:
        batch.run(fm)
        batch.run(qm)
    finally:
        for h in handles:
            h.remove()
    for qname in pairs:
        acc_in, acc_out, acc_own = accs[qname]
        for acc, key in ((acc_in, f"in:{qname}"), (acc_out, f"out:{qname}")):
            ref, got = f_store.get(key), q_store.get(key)
            if ref is not None and got is not None and ref.shape == got.shape:
                acc.add(ref, got)
        ref = f_store.get(f"out:{qname}")
        f_in = f_store.get(f"arg:{qname}", f_store.get(f"in:{qname}"))
        own = _isolated(q_modules[qname], f_in, q_store.get(f"arg:{qname}"))
        if ref is not None and own is not None and own.shape == ref.shape:
            acc_own.add(ref, own)


# --- the entry point -------------------------------------------------------------------------


def compare_layers(
    float_model: nn.Module, q_model: nn.Module, inputs, *, max_batches: int | None = 4
) -> LayerComparison:
    """Compare every matched layer of ``q_model`` with ``float_model`` on ``inputs``.

    Args:
        float_model: the float original.
        q_model: its quantized version (weight-only, dynamic, static, QAT, prepared or
            converted).
        inputs: any form :func:`quantlens.core.data.iter_batches` accepts.
        max_batches: use at most this many batches (None: all).

    Returns:
        A :class:`LayerComparison`: per-layer output/weight SQNR, cosine, max abs error,
        accumulated vs own (isolated) error, the layer where the error jumps, and what was
        not matched. Both models run in eval mode and are left unchanged (training flags,
        observer ranges, BatchNorm statistics).

    Raises:
        InputError: no batch, or no layer could be matched by name.

    Example:
        >>> result = compare_layers(model, ql.quantize(model, ql.WeightOnly(bits=4)), x)
        >>> [(l.name, round(l.own_sqnr_db, 1)) for l in result.layers][:2]
    """
    batches = list(iter_batches(inputs, limit=max_batches))
    if not batches:
        raise InputError("compare_layers got no batch; pass at least one batch of inputs")
    with torch.no_grad(), unchanged(float_model) as fm, unchanged(q_model) as qm:
        float_modules = dict(fm.named_modules())
        q_modules = dict(qm.named_modules())
        pairs, unmatched = _match(float_modules, q_modules, execution_order(fm, batches[0]))
        accs = {q: (_Acc(), _Acc(), _Acc()) for q in pairs}
        for batch in batches:
            _run_batch(fm, qm, q_modules, pairs, batch, accs)
        layers, fused = _rows(pairs, accs, float_modules, q_modules, unmatched)
    if not layers:
        raise InputError(
            "no layer of the quantized model matches a float module by name; "
            "pass the float model that q_model was quantized from"
        )
    return LayerComparison(layers, unmatched, fused, sum(b.size for b in batches))


def _rows(
    pairs, accs, float_modules, q_modules, unmatched
) -> tuple[list[LayerError], dict[str, list[str]]]:
    layers = []
    fused = {}
    for qname, (fname, absorbed) in pairs.items():
        acc_in, acc_out, acc_own = accs[qname]
        if acc_out.count == 0:
            unmatched.setdefault(qname, "outputs not comparable (shapes differ or not float)")
            continue
        if absorbed:
            fused[qname] = absorbed
        in_db, out_db = acc_in.sqnr(), acc_out.sqnr()
        isolated = acc_own.count == acc_out.count
        own_db = acc_own.sqnr() if isolated else _estimated_own_sqnr(in_db, out_db)
        row = LayerError(
            qname,
            type(q_modules[qname]).__name__,
            absorbed[-1] if absorbed else fname,
            in_db,
            out_db,
            acc_out.cosine(),
            acc_out.max_abs,
            own_db,
            isolated=isolated,
        )
        w_ref = float_weight(fname, absorbed, float_modules)
        w_q = dequantized_weight(q_modules[qname])
        if w_ref is not None and w_q is not None and w_ref.shape == w_q.shape:
            wacc = _Acc()
            wacc.add(w_ref, w_q)
            row.weight_sqnr_db, row.weight_cosine, row.weight_max_abs = (
                wacc.sqnr(),
                wacc.cosine(),
                wacc.max_abs,
            )
        row.quantized = (
            row.weight_sqnr_db not in (None, math.inf)
            or row.kind != type(float_modules[fname]).__name__
        )
        layers.append(row)
    candidates = [x for x in layers if x.quantized] or layers  # float layers only pass error on
    if candidates:
        worst = min(candidates, key=lambda x: x.own_sqnr_db)
        if worst.own_sqnr_db < math.inf:
            worst.jump = True
    return layers, fused
