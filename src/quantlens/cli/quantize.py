"""``quantlens quantize MODEL --method weight-only --bits 4 -o OUT``: quantize and save.

MODEL is anything :func:`quantlens.sources.resolve_model` understands. The method is
looked up in the method registry by name (``weight-only`` = ``weight_only``); flags fill
the fields the method's config has, or ``--config FILE.json`` gives the whole config.

A quantlens checkpoint as MODEL is re-quantized: its weight-only layers are turned back
into float layers holding the dequantized weights (:func:`quantlens.api.dequantize`) and
the new config is applied to those, with a warning that the two roundings' errors add
up. Int8 (dynamic, static, QAT) checkpoints cannot be turned back; the error says to
start from the float model.

``--method qat`` trains: the model is prepared (``ql.prepare_qat``), trained for
``--epochs`` at ``--lr`` on ``--train-data`` (default: the zoo model's train split) with a
line per epoch on stderr (``ql.train_qat``), then converted (``ql.convert``); without
labelled training data it refuses with one line. ``quantlens qat MODEL -o OUT`` is the
same as ``quantize --method qat``.

Under ``torchrun --nproc_per_node=N -m quantlens quantize|qat ...`` every rank joins the
process group torchrun describes (gloo on CPU, nccl on GPU; every wait bounded by
``QUANTLENS_SYNC_TIMEOUT``): calibration batches are shared out (every N-th batch) and their
statistics merged, QAT trains under DistributedDataParallel (every N-th batch of 64 on each
rank; on the rank's GPU under nccl; ``--sync-bn`` for SyncBatchNorm), only rank 0 prints
and writes the checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from quantlens.cli._args import (
    add_trust_code,
    check_out_folder,
    data_arg,
    int_in,
    model_arg,
    read_json,
    shorten,
)
from quantlens.core import distributed, torchrun
from quantlens.core.scheme import QScheme
from quantlens.errors import ConfigError, InputError, QuantlensError
from quantlens.methods.base import QuantSummary, config_from_dict, get_method

# flag -> config field it sets (only if the method's config has that field)
_FIELDS = {
    "bits": "bits",
    "algorithm": "algorithm",
    "symmetric": "symmetric",
    "codebook": "codebook",
    "skip": "skip",
    "lm_head": "lm_head",
}


_UNSET = object()  # --group-size not given (None means per-channel)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="quantize a model and write a checkpoint",
        description="Quantize MODEL (zoo name, Hugging Face folder, quantlens checkpoint or "
        "module:factory) and write a quantlens checkpoint folder.",
    )
    parser.add_argument(
        "--method", default="weight-only", help="registered method name (default weight-only)"
    )
    _add_arguments(parser)
    qat = subparsers.add_parser(
        "qat",
        help="quantization-aware training: train, convert, write a checkpoint",
        description="Train MODEL with fake quantization (quantize --method qat), convert it to "
        "int8 and write a quantlens checkpoint folder; under torchrun, on every rank.",
    )
    _add_arguments(qat)
    qat.set_defaults(method="qat")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("-o", "--out", required=True, help="checkpoint folder to write")
    parser.add_argument("--bits", type=int_in(1, 8))
    parser.add_argument(
        "--group-size",
        type=_group_size,
        default=_UNSET,
        help="elements per scale, or 'none' for per-channel",
    )
    parser.add_argument(
        "--algorithm", help="weight-only algorithm: rtn, hqq, gptq, awq or awq+gptq"
    )
    parser.add_argument("--symmetric", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--codebook", help="nf4, log2 or kmeans")
    parser.add_argument(
        "--modules",
        type=_modules,
        help="layer kinds to quantize, comma-separated: "
        "linear,conv2d,embedding (weight-only), linear,lstm,gru (dynamic)",
    )
    parser.add_argument(
        "--embeddings", action="store_true", help="quantize nn.Embedding tables too"
    )
    parser.add_argument(
        "--skip", action="append", help="module name pattern left in float (repeatable)"
    )
    parser.add_argument(
        "--lm-head",
        action="store_true",
        default=None,
        help="quantize a causal LM's output head (and an embedding tied to it) too",
    )
    parser.add_argument("--config", help="a config JSON (as in quantlens.json's 'config')")
    parser.add_argument(
        "--calib-data",
        help="calibration data (zoo data set or .pt/.npz); default: the zoo model's calib split",
    )
    parser.add_argument(
        "--train-data",
        help="QAT: labelled training data (zoo data set or .pt/.npz with "
        "inputs and labels); default: the zoo model's train split",
    )
    parser.add_argument("--epochs", type=int, help=f"QAT: training epochs (default {QAT_EPOCHS})")
    parser.add_argument(
        "--lr", type=float, help=f"QAT: learning rate of SGD with momentum 0.9 (default {QAT_LR})"
    )
    parser.add_argument(
        "--sync-bn",
        action="store_true",
        help="QAT under torchrun: BatchNorm statistics over all ranks while training "
        "(SyncBatchNorm), as torchvision's reference script",
    )
    add_trust_code(parser)
    parser.set_defaults(func=run)


QAT_EPOCHS = 1
QAT_LR = 1e-3
_QAT_FLAGS = ("train_data", "epochs", "lr", "sync_bn")


def _modules(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    if not kinds:
        raise argparse.ArgumentTypeError(
            "--modules needs at least one layer kind, e.g. linear,conv2d"
        )
    return kinds


def _group_size(text: str) -> int | None:
    if text.lower() in ("none", "0", "per-channel"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"group size must be an integer or 'none', got {text!r}"
        ) from None


def build_config(args: argparse.Namespace):
    """The config the flags (or ``--config``) describe."""
    if args.config is not None:
        data = read_json(args.config)
        if not isinstance(data, dict):
            raise InputError(f"{shorten(args.config)} must hold a JSON object with a 'method' key")
        try:
            return config_from_dict(data)
        except QuantlensError as exc:
            raise ConfigError(f"{shorten(args.config)}: {exc}") from exc
    method = get_method(args.method.replace("-", "_"))
    fields = {f.name for f in dataclasses.fields(method.config_cls)}
    kwargs = {}
    given = {flag: getattr(args, flag) for flag in _FIELDS if getattr(args, flag) is not None}
    if args.group_size is not _UNSET:
        given["group_size"] = args.group_size
    for flag, value in given.items():
        if _FIELDS.get(flag, flag) not in fields:
            raise ConfigError(
                f"--{flag.replace('_', '-')} does not apply to method {method.name!r}"
            )
        kwargs[_FIELDS.get(flag, flag)] = tuple(value) if flag == "skip" else value
    if args.modules is not None or args.embeddings:
        if "modules" not in fields:
            flag = "--modules" if args.modules is not None else "--embeddings"
            raise ConfigError(f"{flag} does not apply to method {method.name!r}")
        modules = args.modules if args.modules is not None else ("linear",)
        kwargs["modules"] = modules + (
            ("embedding",) if args.embeddings and "embedding" not in modules else ()
        )
    return method.config_cls(**kwargs)


def _check_qat_flags(args: argparse.Namespace, config) -> None:
    given = [
        f"--{f.replace('_', '-')}"
        for f in _QAT_FLAGS
        if getattr(args, f, None) not in (None, False)
    ]
    if given and config.method != "qat":
        verb = "applies" if len(given) == 1 else "apply"
        raise ConfigError(
            f"{', '.join(given)} {verb} only to --method qat (this is {config.method!r})"
        )
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {args.epochs}")
    if args.lr is not None and not args.lr > 0:
        raise InputError(f"--lr must be > 0, got {args.lr}")


def _train_data(args, resolved):
    from quantlens import zoo

    if args.train_data:
        loaded = data_arg(args.train_data)
        return loaded.train or loaded.test
    if resolved.zoo is not None:
        return zoo.load_dataset(zoo.default_dataset_for(resolved.zoo), "train").batches(64)
    return None


def _say(args, line: str) -> None:
    """A progress line on stderr, from rank 0 only under torchrun."""
    if distributed.rank() == 0:
        print(f"quantlens {args.command}: {line}", file=sys.stderr)


def _quantize_qat(args, resolved, model, config):
    """Prepare, train (a line per epoch on stderr) and convert; the converted model."""
    import quantlens as ql
    from quantlens.core.data import first_batch

    train = _train_data(args, resolved)
    if train is None:
        raise InputError(
            "--method qat trains the model: pass --train-data DATA (a zoo data set or a .pt/.npz "
            "file with inputs and labels)"
        )
    batch = first_batch(train)
    if batch.labels is None:
        raise InputError(
            "--method qat trains on labelled data, but the training data has no labels; give a "
            ".pt/.npz file with 'inputs' and 'labels' (or a zoo data set with labels)"
        )
    epochs, lr = args.epochs or QAT_EPOCHS, args.lr or QAT_LR
    if args.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    example = batch.args or None
    if distributed.is_distributed() and torch.distributed.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())  # DDP over nccl: on the GPU
        model = model.to(device)
        example = tuple(a.to(device) for a in example) if example else None
    prepared = ql.prepare_qat(model, config, example_inputs=example)
    ranks = f" on {distributed.world_size()} ranks" if distributed.is_distributed() else ""
    _say(args, f"QAT training for {epochs} epoch(s) at lr {lr:g}{ranks}")
    history = ql.train_qat(prepared, train, epochs=epochs, lr=lr)
    for h in history:
        acc = (
            f", accuracy {100 * h['train_accuracy']:.1f}%"
            if h.get("train_accuracy") is not None
            else ""
        )
        _say(args, f"epoch {h['epoch']}/{epochs}: train loss {h['train_loss']:.4f}{acc}")
    qm = ql.convert(prepared.eval())
    qm.quantlens_summary.note(
        f"QAT: {epochs} epoch(s) at lr {lr:g}, final train loss {history[-1]['train_loss']:.4f}"
    )
    return qm


def _calib(args, resolved, config):
    """The calibration batches; under torchrun, this rank's share (every N-th batch)."""
    from quantlens import zoo

    calib = None
    if args.calib_data:
        loaded = data_arg(args.calib_data)
        calib = loaded.calib or loaded.test
    elif resolved.zoo is not None:
        name = zoo.default_dataset_for(resolved.zoo)
        calib = zoo.load_dataset(name, "calib").batches(32)
    world, rank = distributed.world_size(), distributed.rank()
    if world == 1:
        return calib
    if isinstance(calib, list) and len(calib) >= world:  # merged over the ranks before converting
        return calib[rank::world]
    if isinstance(calib, torch.Tensor) and len(calib) >= world:
        return calib[rank::world]
    if isinstance(calib, tuple) and len(calib) == 2 and len(calib[0]) >= world:
        return (calib[0][rank::world], calib[1][rank::world])
    return calib


def render_summary(summary: QuantSummary, console) -> None:
    """The per-layer table and totals of a quantization."""
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in (
        "layer",
        "type",
        "action",
        "scheme / algorithm",
        "bytes before",
        "bytes after",
        "reason",
    ):
        table.add_column(col, justify="right" if col.startswith("bytes") else "left")
    for r in summary.records:
        table.add_row(
            r.name or "(root)",
            r.kind,
            r.action,
            r.detail,
            f"{r.bytes_before:,}" if r.bytes_before else "",
            f"{r.bytes_after:,}" if r.bytes_after else "",
            r.reason,
        )
    console.print(table)
    console.print(str(summary), markup=False, highlight=False)


def _float_from_checkpoint(spec: str, quantized):
    """The float model a checkpoint's quantized model dequantizes to (in place: the CLI
    loaded it and uses it for nothing else), and the warning."""
    from quantlens.api import dequantize

    schemes = sorted(
        {
            m.scheme.describe()
            for m in quantized.modules()
            if isinstance(getattr(m, "scheme", None), QScheme)
        }
    )
    try:
        model = dequantize(quantized, inplace=True)
    except InputError as exc:
        raise InputError(f"{spec} is a quantized checkpoint: {exc}") from exc
    warning = (
        f"{spec} is already quantized ({', '.join(schemes)}); its layers were dequantized and "
        "quantized again, so the new rounding error adds to the old one; quantize the float model "
        "for the best accuracy"
    )
    return model, warning


def run(args: argparse.Namespace) -> int:
    """Quantize (or train, for QAT) and save. Under ``torchrun`` every rank joins the
    process group from the environment (gloo on CPU, nccl on GPU, every wait bounded by
    ``QUANTLENS_SYNC_TIMEOUT``): QAT trains under DDP, calibration statistics are merged,
    rank 0 writes the checkpoint and prints; the group is left at the end."""
    check_out_folder(Path(args.out), "-o")
    with torchrun.joined_from_env():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    import quantlens as ql

    config = build_config(args)
    _check_qat_flags(args, config)
    resolved = model_arg(args.model, trust_code=args.trust_code)
    model, warning = resolved.model, None
    if resolved.kind == "checkpoint":
        model, warning = _float_from_checkpoint(args.model, model)
    if config.method == "qat":
        qm = _quantize_qat(args, resolved, model, config)
    else:
        needs_data = (
            getattr(config, "algorithm", None) in ("gptq", "awq", "awq+gptq")
            or getattr(config, "smoothquant", None) is not None
            or config.method in ("static",)
        )
        calib = _calib(args, resolved, config) if needs_data else None
        if needs_data and calib is None:
            raise InputError(
                f"{config.method} with these settings needs calibration data; pass --calib-data"
            )
        # a dequantized checkpoint is a model of our own: quantize it without another copy
        qm = ql.quantize(model, config, calib_data=calib, inplace=resolved.kind == "checkpoint")
    if warning:
        qm.quantlens_summary.note(warning)
    out = ql.save(qm, args.out)
    if distributed.rank() != 0:
        return 0  # every rank holds the same model; rank 0 wrote it and reports it
    console = Console() if Console().is_terminal else Console(width=160)
    if warning:
        print(f"quantlens quantize: warning: {warning}", file=sys.stderr)
    render_summary(qm.quantlens_summary, console)
    size = sum(p.stat().st_size for p in Path(out).iterdir() if p.is_file())
    console.print(f"wrote {out} ({size / 1e6:.2f} MB on disk)", markup=False, highlight=False)
    return 0
