"""Sequential calibration: each layer's Hessian from the outputs of the layers quantized before it.

One pass of the float model gives every layer the inputs the *float* layers before it
produce; at inference those layers are quantized, and their error reaches the later layers'
inputs. The GPTQ reference implementation therefore quantizes a transformer block by block,
and inside a block stage by stage (``q/k/v``, then ``o``, then ``gate/up``, then ``down``),
each stage calibrated on inputs that went through everything quantized before it.

This module does that without knowing the architecture:

1. the *blocks* are the entries of the model's largest ``nn.ModuleList`` holding the layers
   (``model.layers`` of a Llama, ``transformer.h`` of a GPT-2); the inputs of the first block
   are captured once per calibration batch (the model is stopped there);
2. for each block, its not-yet-quantized layers are hooked and the block is run on the
   cached inputs; the layer called first, with every layer that read the very same input
   tensor, is one *stage*: their Hessians are complete, they are quantized with GPTQ, and
   their weights are replaced by the dequantized ones while the block runs again for the
   next stage;
3. the block's outputs (through its quantized layers) become the next block's inputs.

Layers outside the blocks are quantized in the same stage-by-stage way: those that run before
the first block first (on passes stopped at the first block), those after the last one (a
language model's head) on passes of the whole model with the blocks quantized. Every weight is
restored before returning: the caller builds the quantized layers from the codes returned.
A model without such a block list is quantized layer by layer in the same way, one model
pass per stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from quantlens.core import distributed
from quantlens.core.data import Batch, iter_batches, run_batch
from quantlens.core.progress import track
from quantlens.core.qtensor import QTensor
from quantlens.errors import InputError

_CACHE_KWARGS = ("past_key_values", "past_key_value", "cache", "layer_past")


class _Stop(Exception):
    """Raised by a hook to end a forward pass early."""


def _blocks(model: nn.Module, names: list[str]) -> tuple[str, nn.ModuleList] | None:
    """The ``nn.ModuleList`` (and its name) whose entries hold the most of ``names``."""
    best, best_count = None, 1
    for prefix, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1:
            start = f"{prefix}." if prefix else ""
            count = sum(n.startswith(start) for n in names)
            if count > best_count:
                best, best_count = (prefix, module), count
    return best


def _hessian_hooks(modules: Mapping[str, nn.Module], sums: dict, counts: dict, seen: list):
    """Forward hooks adding ``X^T X`` of each module's input to ``sums``; ``seen`` records
    ``(name, input tensor)`` in call order."""

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].detach()
            seen.append((name, x))
            x = x.reshape(-1, x.shape[-1]).double()  # (tokens, in)
            sums[name] = sums.get(name, 0) + x.T @ x
            counts[name] = counts.get(name, 0) + x.shape[0]

        return record

    return [m.register_forward_hook(hook(n)) for n, m in modules.items()]


def _hessians(sums: dict, counts: dict, names: list[str], modules, sync: bool) -> dict:
    if sync and distributed.is_distributed():
        for n in names:
            width = modules[n].in_features
            total = sums.get(n, torch.zeros(width, width, dtype=torch.float64))
            sums[n] = distributed.all_reduce(torch.as_tensor(total, dtype=torch.float64), "sum")
            counts[n] = int(distributed.all_reduce(torch.tensor([float(counts.get(n, 0))]), "sum"))
    return {n: (2 * sums[n] / counts[n]).float() for n in names if counts.get(n)}


def _stage(seen: list, remaining: list[str]) -> list[str]:
    """The first layer called and every remaining layer that read the same input tensor."""
    first_name, first_x = seen[0]
    same = {
        n
        for n, x in seen
        if x is first_x or (x.data_ptr() == first_x.data_ptr() and x.shape == first_x.shape)
    }
    return [n for n in remaining if n in same or n == first_name]


@torch.no_grad()
def quantize_sequentially(
    model: nn.Module,
    names: list[str],
    calib_data,
    quantize_layer: Callable[[str, torch.Tensor, torch.Tensor], QTensor],
    *,
    limit: int | None = None,
    progress: bool | None = None,
    sync: bool = True,
) -> dict[str, tuple[torch.Tensor, QTensor]]:
    """Quantize the named Linear layers in the order the model runs them, each calibrated on
    inputs through the layers quantized before it (see the module docstring); the model's
    weights are the same afterwards.

    Args:
        model: the float model (run, weights restored).
        names: the Linear layers to quantize.
        calib_data: any form :func:`quantlens.core.data.iter_batches` accepts.
        quantize_layer: ``(name, float weight, H) -> QTensor``, e.g. GPTQ with the layer's
            scheme; ``H = 2 X X^T / n`` of the layer's inputs, ``(in, in)`` float32.
        limit: use at most this many batches.
        progress: show a progress bar over the blocks.
        sync: under ``torch.distributed``, sum the Hessians over the ranks.

    Returns:
        ``{name: (H, codes)}`` for every layer the calibration data reached.

    Example:
        >>> done = quantize_sequentially(model, ["fc1", "fc2"], calib, gptq_for_layer)
        >>> done["fc2"][1].dequantize().shape
    """
    batches = list(iter_batches(calib_data, limit=limit, what="calib_data"))
    if not batches:
        raise InputError("calib_data yielded no batch; GPTQ needs a few batches of real inputs")
    modules = dict(model.named_modules())
    wanted = set(names)
    names = [n for n in modules if n in wanted]  # module (= usually call) order
    originals = {n: modules[n].weight.data.clone() for n in names}
    out: dict[str, tuple[torch.Tensor, QTensor]] = {}

    def quantize(stage: list[str], hessians: dict) -> None:
        for n in stage:
            if n not in hessians:  # never called on the calibration data: no statistics
                continue
            qt = quantize_layer(n, originals[n], hessians[n])
            out[n] = (hessians[n], qt)
            modules[n].weight.data.copy_(qt.dequantize().to(modules[n].weight.dtype))

    def run_stages(layer_names: list[str], run: Callable[[], object]) -> None:
        remaining = list(layer_names)
        while remaining:
            sums: dict[str, torch.Tensor] = {}
            counts: dict[str, int] = {}
            seen: list[tuple[str, torch.Tensor]] = []
            hooks = _hessian_hooks({n: modules[n] for n in remaining}, sums, counts, seen)
            try:
                run()
            finally:
                for h in hooks:
                    h.remove()
            if not seen:  # none of them runs on this data
                break
            stage = _stage(seen, remaining)
            quantize(stage, _hessians(sums, counts, stage, modules, sync))
            remaining = [n for n in remaining if n not in stage]

    def run_model() -> None:
        for batch in batches:
            run_batch(model, batch, "calib_data")

    was_training = model.training
    model.eval()
    try:
        found = _blocks(model, names)
        if found is None:
            run_stages(names, run_model)
            return out
        prefix, blocks = found
        inside = [n for n in names if n.startswith(f"{prefix}." if prefix else "")]
        outside = [n for n in names if n not in inside]
        # layers before the blocks first (a pass stopped at the first block sees only them)
        run_stages(outside, lambda: _block_inputs(model, blocks[0], batches))
        inputs = _block_inputs(model, blocks[0], batches)
        for index, block in track(
            list(enumerate(blocks)), "GPTQ true-sequential", enabled=progress
        ):
            start = f"{prefix}.{index}." if prefix else f"{index}."
            layer_names = [n for n in inside if n.startswith(start)]

            def run_block(block=block, inputs=inputs) -> None:
                for args, kwargs in inputs:
                    block(*args, **kwargs)

            run_stages(layer_names, run_block)
            inputs = [_next_inputs(block, a, k) for a, k in inputs]
        run_stages([n for n in outside if n not in out], run_model)
    finally:
        for n in names:
            modules[n].weight.data.copy_(originals[n])
        model.train(was_training)
    return out


def _next_inputs(block: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The next block's inputs: these, with the hidden states replaced by ``block``'s output."""
    out = block(*args, **kwargs)
    hidden = out[0] if isinstance(out, (tuple, list)) else out
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _block_inputs(model: nn.Module, first_block: nn.Module, batches: list[Batch]) -> list:
    """``(args, kwargs)`` the first block is called with, per batch (the model is stopped
    there); a KV cache among them is dropped, so the block can run again on them."""
    captured = []

    def capture(module, args, kwargs):
        kwargs = dict(kwargs)
        for key in _CACHE_KWARGS:
            if key in kwargs:
                kwargs[key] = None
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        captured.append((args, kwargs))
        raise _Stop

    handle = first_block.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        for batch in batches:
            try:
                run_batch(model, batch, "calib_data")
            except _Stop:
                pass
    finally:
        handle.remove()
    return captured
