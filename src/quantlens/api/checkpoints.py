"""Saving a quantized model as a checkpoint folder and loading it back."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from quantlens import checkpoint, sources
from quantlens.api._steps import finish, linear_like_to_linear, methods_of, to_float32
from quantlens.core import distributed
from quantlens.errors import CheckpointError, InputError, QuantlensError, error_line
from quantlens.methods.base import QuantContext, QuantSummary, config_from_dict
from quantlens.nn.input_scale import restore_input_scales

__version__ = "0.1.0"


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
                f"{directory} does not record how to rebuild its model; "
                "pass model=<a float skeleton of the same architecture>"
            )
        model = checkpoint.build_skeleton(meta["source"], trust_code=trust_code, origin=meta_path)
    else:
        skeleton_source = checkpoint.source_of(model)
        model = copy.deepcopy(model)
        if _is_factory(meta.get("source")) and not trust_code:
            meta["source"] = skeleton_source  # never carry a factory the caller did not trust
    summary = QuantSummary()
    to_float32(model, summary)
    linear_like_to_linear(model, summary)
    example = meta.get("example_inputs")
    ctx = QuantContext(config, summary, example_inputs=example)
    if isinstance(
        meta.get("layers"), dict
    ):  # per-layer schemes as saved (rebuilds may follow them)
        ctx.saved_layers = meta["layers"]
    try:
        for method in methods_of(config):
            model = method.rebuild(model, ctx)
        if ctx.saved_layers is not None:  # room for the input scales AWQ / SmoothQuant kept
            restore_input_scales(model, ctx.saved_layers)
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise CheckpointError(
            f"{meta_path}: its {config.method} config does not fit the model "
            f"({type(exc).__name__}: {error_line(exc)}); "
            "pass the skeleton of the model that was saved"
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
    return finish(model, config, _saved_summary(meta, summary), meta.get("source"))


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


def _is_factory(source: object) -> bool:
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
