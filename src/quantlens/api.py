"""The single entry points: quantize, prepare / convert, dequantize, save, load, export."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

import quantlens.methods  # noqa: F401  (registers the built-in methods)
from quantlens import checkpoint, sources
from quantlens.core import distributed
from quantlens.errors import (
    CheckpointError,
    InputError,
    NothingToQuantizeError,
    QuantlensError,
    error_line,
)
from quantlens.export import export as export_model
from quantlens.methods import linear_like
from quantlens.methods.base import (
    QuantConfig,
    QuantContext,
    QuantSummary,
    check_patterns,
    config_from_dict,
    configs_in,
    float_dtype_of,
    method_for_config,
    state_bytes,
)
from quantlens.methods.guards import refuse_quantized, restore_modes, train_modes

__version__ = "0.1.0"


def _methods_of(config: QuantConfig):
    found = {
        method_for_config(type(c)).name: method_for_config(type(c)) for c in configs_in(config)
    }
    return sorted(found.values(), key=lambda m: m.order)


def _check_model(model, config) -> None:
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, QuantConfig):
        raise InputError(
            "expected a quantlens config such as ql.WeightOnly(bits=4) or ql.Dynamic(), got "
            f"{type(config).__name__}"
        )
    meta = next(
        (n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta), None
    )
    if meta is not None:
        raise InputError(
            f"the model's {meta} is on the meta device and holds no values; load its weights first "
            "(e.g. model.to_empty(device='cpu') then load_state_dict, or from_pretrained without "
            "device_map='meta')"
        )
    check_patterns(config, model)


def _to_float32(model: nn.Module, summary: QuantSummary) -> None:
    dtype = float_dtype_of(model)
    if dtype in (torch.float16, torch.bfloat16):
        model.float()
        summary.note(
            f"the model's weights were {str(dtype).removeprefix('torch.')}; cast to float32 for "
            "quantization"
        )


def _linear_like_to_linear(model: nn.Module, summary: QuantSummary) -> None:
    for text in linear_like.notes(linear_like.make_linear(model)):
        summary.note(text)


def _finish(model: nn.Module, config: QuantConfig, summary: QuantSummary, source) -> nn.Module:
    model.quantlens_config = config
    model.quantlens_summary = summary
    if source is not None:
        model.quantlens_source = source
    if isinstance(model, torch.fx.GraphModule):  # copy.deepcopy of a GraphModule keeps only these
        keep = {k: v for k, v in vars(model).items() if k.startswith("quantlens_")}
        model.meta.setdefault("_user_preserved_attributes", {}).update(keep)
    return model


def quantize(
    model: nn.Module,
    config: QuantConfig,
    *,
    calib_data=None,
    inplace: bool = False,
    example_inputs: tuple | None = None,
    calib_batches: int | None = None,
    progress: bool | None = None,
) -> nn.Module:
    """Quantize ``model`` with ``config`` and return the quantized model.

    Args:
        model: any ``nn.Module`` (a hand-written model, a Hugging Face transformer, ...).
        config: one method config (``ql.WeightOnly``, ``ql.Dynamic``, ``ql.Static``, ...),
            whose ``skip`` and ``overrides`` select layers and mix methods.
        calib_data: batches for methods that calibrate (Static, weight-only GPTQ and AWQ,
            ``smoothquant=`` of Dynamic / Static): any form
            :func:`quantlens.core.data.iter_batches` accepts.
        inplace: modify ``model`` itself instead of a copy.
        example_inputs: inputs for graph capture when no calibration data is given.
        calib_batches: stop calibration after this many batches.
        progress: show progress bars (default: when stderr is a terminal).

    Returns:
        The quantized model, in the train/eval mode ``model`` was in (module by module),
        whatever the method: methods calibrate in eval mode inside, and a model given in
        train mode comes back in train mode, like any ``nn.Module`` transform (weight-only
        and dynamic layers keep dropout active then; the int8 graphs of Static and QAT
        compute as in eval mode whatever the flag); call ``.eval()`` for inference.
        ``model.quantlens_summary`` says what was quantized, what was left in float and why, and the
        bytes before and after (of the quantized layers and of the whole model).

    Raises:
        InputError: ``model`` is already quantized (by quantlens or PyTorch) or prepared:
            quantize the float model, or ``dequantize`` a weight-only one first.

    Example:
        >>> qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=128))
        >>> print(qm.quantlens_summary)
    """
    _check_model(model, config)
    refuse_quantized(model)
    modes = train_modes(model)
    source = checkpoint.source_of(model)
    summary = QuantSummary(model_bytes_before=state_bytes(model)[0])
    target = model if inplace else copy.deepcopy(model)
    _to_float32(target, summary)
    _linear_like_to_linear(target, summary)
    ctx = QuantContext(config, summary, calib_data, example_inputs, progress, calib_batches)
    for method in _methods_of(config):
        target = method.apply(target, ctx)
    if not summary.quantized:
        kinds = sorted({type(m).__name__ for m in model.modules() if not list(m.children())})
        raise NothingToQuantizeError(
            f"{type(config).__name__} found no layer to quantize in this model (its layers: "
            f"{', '.join(kinds) or 'none'}); "
            + ("check skip/overrides, or " if config.skip or config.overrides else "")
            + "choose a method that supports these layers"
            + "".join(
                f" ({r.name or '(model)'}: {r.reason})"
                for r in summary.records[:1]
                if r.action == "float" and r.reason
            )
        )
    summary.model_bytes_after = state_bytes(target)[0]
    restore_modes(target, modes)
    return _finish(target, config, summary, source)


def prepare(
    model: nn.Module, config: QuantConfig, *, inplace: bool = False, example_inputs=None
) -> nn.Module:
    """First half of a two-phase method (Static, QAT): insert observers / fake quantization.

    Run calibration batches (Static) or train (QAT) on the returned model, then call
    :func:`convert`. The prepared model is in the mode its method works in: eval for
    calibration (Static), train for QAT.
    """
    _check_model(model, config)
    refuse_quantized(model)
    methods = [m for m in _methods_of(config) if m.prepare is not None]
    if not methods:
        raise InputError(
            f"{type(config).__name__} is one-shot: call ql.quantize(model, config) instead of "
            "prepare"
        )
    source = checkpoint.source_of(model)
    summary = QuantSummary(model_bytes_before=state_bytes(model)[0])
    target = model if inplace else copy.deepcopy(model)
    _to_float32(target, summary)
    _linear_like_to_linear(target, summary)
    ctx = QuantContext(config, summary, example_inputs=example_inputs)
    for method in methods:
        target = method.prepare(target, ctx)
    target.quantlens_prepared = ctx
    return _finish(target, config, summary, source)


def prepare_qat(model: nn.Module, config: QuantConfig, **kwargs) -> nn.Module:
    """Prepare ``model`` for quantization-aware training (see :func:`prepare`)."""
    return prepare(model, config, **kwargs)


def convert(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Second half of a two-phase method: turn a prepared (calibrated / trained) model into
    the quantized one, in the train/eval mode ``model`` is in (as :func:`quantize` does: a
    model converted straight after training is in train mode; ``ql.convert(qat.eval())``
    for inference)."""
    ctx = getattr(model, "quantlens_prepared", None)
    if ctx is None:
        raise InputError(
            "this model was not prepared by ql.prepare / ql.prepare_qat; prepare it first"
        )
    modes = train_modes(model)
    source = getattr(model, "quantlens_source", None)
    ctx = copy.deepcopy(ctx)  # converting a copy every epoch must not add to one summary
    target = model if inplace else copy.deepcopy(model)
    target.__dict__.pop("quantlens_prepared", None)
    if isinstance(target, torch.fx.GraphModule):
        target.meta.get("_user_preserved_attributes", {}).pop("quantlens_prepared", None)
    for method in _methods_of(ctx.config):
        target = (
            method.convert(target, ctx) if method.convert is not None else method.apply(target, ctx)
        )
    ctx.summary.model_bytes_after = state_bytes(target)[0]
    restore_modes(target, modes)
    return _finish(target, ctx.config, ctx.summary, source)


def dequantize(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """A float copy of a quantized model (or the model itself, ``inplace``): every quantized
    layer becomes the float layer it replaced, holding the dequantized weights (what the
    quantized layer computes with).

    This is how a checkpoint is re-quantized with another config (``quantlens quantize
    CKPT``): the new rounding starts from already-rounded weights, so its error adds to the
    old one; quantizing the original float model is more accurate. Only methods whose
    layers keep a float activation path (weight-only) can be turned back.

    Args:
        model: a model returned by :func:`quantize`, :func:`convert` or :func:`load`.
        inplace: turn ``model`` itself back (it is no longer a quantized model then)
            instead of a copy.

    Returns:
        The float model (a new one unless ``inplace``); it keeps the record of how to
        rebuild its skeleton, so the result of quantizing it again saves and loads like the
        original.

    Raises:
        InputError: ``model`` is not a quantlens-quantized model, or a method it uses
            (int8 dynamic, static, QAT) cannot be turned back into float.

    Example:
        >>> w8 = ql.load("minilm-w8/")
        >>> w4 = ql.quantize(dequantize(w8), ql.WeightOnly(bits=4, group_size=128))
    """
    config = getattr(model, "quantlens_config", None)
    if config is None:
        raise InputError(
            "this model was not quantized by quantlens; there is nothing to dequantize"
        )
    methods = _methods_of(config)
    fixed = sorted(m.name for m in methods if m.dequantize is None)
    if fixed:
        raise InputError(
            f"a {', '.join(fixed)} model cannot be turned back into float (its layers run on "
            "integer kernels); start from the float model it was made from (zoo name, Hugging Face "
            "folder or module:factory)"
        )
    source = getattr(model, "quantlens_source", None)
    target = model if inplace else copy.deepcopy(model)
    for method in methods:
        target = method.dequantize(target)
    for attr in ("quantlens_config", "quantlens_summary"):
        target.__dict__.pop(attr, None)
    if source is not None:
        target.quantlens_source = dict(source)
    return target


def save(model: nn.Module, directory: str | os.PathLike, *, source: dict | None = None) -> Path:
    """Save a quantized model as ``directory/model.safetensors`` + ``directory/quantlens.json``.

    Args:
        model: a model returned by :func:`quantize` or :func:`convert`.
        directory: the checkpoint folder. Only its ``model.safetensors`` and
            ``quantlens.json`` are replaced (staged beside it and renamed into place under an
            advisory lock; a concurrent save waits); other files there and a symlinked folder
            stay as they are. ``quantlens.json`` records the SHA-256 of the weights. Tied or
            shared tensors are written once and load back tied.
        source: how to rebuild the float skeleton when the model does not record it:
            ``{"kind": "factory", "path": "pkg.module:make_model", "kwargs": {...}}``.
            Hugging Face models and zoo models record it themselves.

    Returns:
        The checkpoint directory.

    Under ``torch.distributed`` (every rank holds the same model after ``ql.convert``)
    rank 0 writes and the other ranks wait for it (at most ``QUANTLENS_SYNC_TIMEOUT``
    seconds); if rank 0 fails, they raise too.

    Raises:
        InputError: the model was not quantized by quantlens, or ``directory`` is a file or
            a folder of other files with no checkpoint.
        CheckpointError: the write failed (disk full, no permission); an earlier checkpoint
            there is unchanged.
        DistributedError: on ranks other than 0, rank 0 failed to write or did not finish.

    Example:
        >>> ql.save(qm, "out/")   # out/model.safetensors, out/quantlens.json
    """
    config = getattr(model, "quantlens_config", None)
    if config is None:
        raise InputError(
            "this model was not quantized by quantlens; call ql.quantize first, then ql.save"
        )
    tensors, layout = checkpoint.flatten_state(model.state_dict())
    summary = getattr(model, "quantlens_summary", None)
    meta = {
        "format": "quantlens",
        "format_version": checkpoint.FORMAT_VERSION,
        "quantlens_version": __version__,
        "torch_version": torch.__version__,
        "method": config.method,
        "config": config.to_dict(),
        "source": source or checkpoint.source_of(model),
        "example_inputs": getattr(model, "quantlens_example_inputs", None),
        "summary": summary.to_dict() if summary else None,
        "layers": _layer_configs(model),
        "state": layout,
    }
    written = distributed.on_rank0(
        lambda: checkpoint.write(directory, tensors, meta),
        what=f"saving {directory} (under torch.distributed every rank calls ql.save)",
    )
    return written if written is not None else Path(directory)


def _layer_configs(model: nn.Module) -> dict:
    """``{name: {"class": ..., **layer.config()}}`` of quantlens' own quantized layers (what
    ``quantlens info`` and ``inspect`` read a checkpoint's layers from without the model;
    loading rebuilds from the method config, not from this)."""
    return {
        name: {"class": type(m).__name__, **m.config()}
        for name, m in model.named_modules()
        if type(m).__module__.startswith("quantlens.nn.")
        and callable(getattr(m, "config", None))
        and callable(getattr(type(m), "from_config", None))
    }


def load(
    directory: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    trust_code: bool = False,
) -> nn.Module:
    """Load a checkpoint written by :func:`save`.

    Without ``model``, the float skeleton is rebuilt from the checkpoint's source: a
    Hugging Face config (a transformers model class built from it, no remote code) or a
    zoo name. A checkpoint whose source is a ``module:function`` factory runs that
    function, so it loads only with ``trust_code=True`` or a ``model=`` skeleton.

    Args:
        directory: the checkpoint folder.
        model: a float skeleton of the same architecture (required for plain nn.Modules
            whose checkpoint records no source; its weights are not used).
        trust_code: allow calling the ``module:function`` factory the checkpoint names,
            with the keyword arguments it records. Nothing is ever unpickled. Without it the
            loaded model does not carry such a source either (it records the skeleton's own,
            if any), so nothing that re-saves or re-loads it calls the factory later.

    Returns:
        The quantized model, giving bit-identical outputs to the one that was saved.

    Raises:
        CheckpointError: a file is missing, truncated, from a newer version, malformed,
            does not fit the skeleton, does not match the SHA-256 recorded at save time, or
            needs ``trust_code=True``; the message names the file and the problem.

    Example:
        >>> qm = ql.load("out/")                       # Hugging Face or zoo model
        >>> qm = ql.load("out/", model=MyNet())        # a plain nn.Module
    """
    if model is not None and not isinstance(model, nn.Module):
        raise InputError(f"model= must be a torch.nn.Module skeleton, got {type(model).__name__}")
    tensors, meta = checkpoint.read(directory)
    meta_path = Path(directory) / checkpoint.META_FILE
    try:
        config = config_from_dict(meta["config"])
    except QuantlensError as exc:
        raise CheckpointError(f"{meta_path}: its 'config' cannot be used: {exc}") from exc
    if model is None:
        if meta.get("source") is None:
            raise CheckpointError(
                f"{directory} does not record how to rebuild its model; pass model=<a float "
                "skeleton of the same architecture>"
            )
        model = checkpoint.build_skeleton(meta["source"], trust_code=trust_code, origin=meta_path)
    else:
        skeleton_source = checkpoint.source_of(model)
        model = copy.deepcopy(model)
        if _is_factory(meta.get("source")) and not trust_code:
            meta["source"] = skeleton_source  # never carry a factory the caller did not trust
    summary = QuantSummary()
    _to_float32(model, summary)
    _linear_like_to_linear(model, summary)
    example = meta.get("example_inputs")
    ctx = QuantContext(config, summary, example_inputs=example)
    if isinstance(
        meta.get("layers"), dict
    ):  # per-layer schemes as saved (rebuilds may follow them)
        ctx.saved_layers = meta["layers"]
    try:
        for method in _methods_of(config):
            model = method.rebuild(model, ctx)
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise CheckpointError(
            f"{meta_path}: its {config.method} config does not fit the model "
            f"({type(exc).__name__}: {error_line(exc)}); pass the skeleton of the model that was "
            "saved"
        ) from exc
    state = checkpoint.unflatten_state(tensors, meta["state"], origin=meta_path)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{Path(directory) / checkpoint.WEIGHTS_FILE} does not fit the model: "
            f"{' '.join(first[:3])[:400]}"
        ) from exc
    model.eval()
    return _finish(model, config, _saved_summary(meta, summary), meta.get("source"))


def _is_checkpoint(spec: str, path: Path, kind: str | None) -> bool:
    return kind == "dir" and (path / checkpoint.META_FILE).is_file()


sources.register_model_form(  # ql.load_model / the CLI's MODEL take a checkpoint folder
    sources.ModelForm(
        "checkpoint",
        "a quantlens checkpoint folder",
        _is_checkpoint,
        lambda spec, options: load(spec, trust_code=options.trust_code),
        order=20,
        marker=checkpoint.META_FILE,
    )
)


def _is_factory(source) -> bool:
    return (
        isinstance(source, dict) and source.get("zoo") is None and source.get("kind") == "factory"
    )


def _saved_summary(meta: dict, rebuilt: QuantSummary) -> QuantSummary:
    """The summary ``quantize`` wrote into the checkpoint (what was quantized and why), with
    the notes of loading added; the rebuild's own records where the file has none."""
    saved = checkpoint.read_summary(meta)
    if saved is None:
        return rebuilt
    for text in rebuilt.notes:
        saved.note(text)
    return saved


def export(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    format: str = "torchscript",
    example_inputs=None,
    weight_op: str = "auto",
) -> Path:
    """Export a quantized model for deployment.

    ``format="onnx"`` (needs ``pip install 'quantlens[onnx]'``):

    - Static / QAT int8: a QDQ graph as ONNX Runtime's ``quantize_static`` writes it (int8
      per-channel weights, int32 biases, the model's own activation scales and zero-points
      as QuantizeLinear/DequantizeLinear pairs), which ONNX Runtime runs on its int8 kernels;
    - Dynamic int8: per-token activation scales computed in the graph and ``MatMulInteger``;
    - weight-only: packed codes in ``MatMulNBits`` (Linear), ``DequantizeLinear`` (Conv2d,
      UINT4 up to 4 bits) and ``Gather`` of packed rows (Embedding).

    A layer with no ONNX form raises an error naming it; the graph is never silently float.
    ``format="pt2"``: a ``torch.export`` program (weight-only and dynamic models) that runs
    with PyTorch alone. ``format="torchscript"``: Static, QAT and Dynamic models, loaded with
    ``torch.jit.load``.

    Args:
        model: a quantized model (left unchanged).
        path: output file (written atomically; its folder must exist).
        format: ``"onnx"``, ``"pt2"`` or ``"torchscript"``.
        example_inputs: a tensor, a tuple of positional tensors, or a dict of keyword
            tensors (a tokenized Hugging Face batch). ONNX and pt2 need them unless the model
            records its input shapes (Static/QAT models do); their batch axis (and the
            sequence axis of integer inputs) stays dynamic. TorchScript traces with them
            (scripts without); a traced model takes inputs of the same rank.
        weight_op: ONNX form of weight-only Linear layers: ``"auto"`` (MatMulNBits where the
            scheme allows), ``"matmulnbits"`` or ``"dequantize"`` (DequantizeLinear + MatMul).

    Returns:
        The written path.

    Raises:
        InputError: bad path or inputs, or a layer the format cannot express (named).
        MissingDependencyError: ``onnx`` is not installed (the message names the extra).

    Example:
        >>> ql.export(qm, "model.onnx", format="onnx", example_inputs=(x,))
        >>> ql.export(qm, "model.pt", example_inputs=(x,)); torch.jit.load("model.pt")(x)
    """
    return export_model(
        model, path, format=format, example_inputs=example_inputs, weight_op=weight_op
    )
