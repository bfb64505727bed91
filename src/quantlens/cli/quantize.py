"""``quantlens quantize MODEL --method weight-only --bits 4 -o OUT``: quantize and save.

MODEL is anything :func:`quantlens.cli._models.resolve_model` understands. The method is
looked up in the method registry by name (``weight-only`` = ``weight_only``); flags fill
the fields the method's config has, or ``--config FILE.json`` gives the whole config.

A quantlens checkpoint as MODEL is re-quantized: its weight-only layers are turned back
into float layers holding the dequantized weights (:func:`quantlens.api.dequantize`) and
the new config is applied to those, with a warning that the two roundings' errors add
up. Int8 (dynamic, static, QAT) checkpoints cannot be turned back; the error says to
start from the float model.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from quantlens.cli._args import check_out_folder, int_in, read_json, shorten
from quantlens.cli._models import add_trust_code
from quantlens.core.scheme import QScheme
from quantlens.errors import ConfigError, InputError, QuantlensError
from quantlens.methods.base import QuantSummary, config_from_dict, get_method

# flag -> config field it sets (only if the method's config has that field)
_FIELDS = {"bits": "bits", "algorithm": "algorithm", "symmetric": "symmetric",
           "codebook": "codebook", "skip": "skip"}


_UNSET = object()  # --group-size not given (None means per-channel)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantize", help="quantize a model and write a checkpoint",
        description="Quantize MODEL (zoo name, Hugging Face folder, quantlens checkpoint or "
                    "module:factory) and write a quantlens checkpoint folder.")
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("-o", "--out", required=True, help="checkpoint folder to write")
    parser.add_argument("--method", default="weight-only", help="registered method name (default weight-only)")
    parser.add_argument("--bits", type=int_in(1, 8))
    parser.add_argument("--group-size", type=_group_size, default=_UNSET, help="elements per scale, or 'none' for per-channel")
    parser.add_argument("--algorithm", help="weight-only algorithm: rtn, hqq or gptq")
    parser.add_argument("--symmetric", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--codebook", help="nf4, log2 or kmeans")
    parser.add_argument("--embeddings", action="store_true", help="quantize nn.Embedding tables too")
    parser.add_argument("--skip", action="append", help="module name pattern left in float (repeatable)")
    parser.add_argument("--config", help="a config JSON (as in quantlens.json's 'config')")
    parser.add_argument("--calib-data", help="calibration data (zoo data set or .pt/.npz); default: the "
                        "zoo model's calib split")
    add_trust_code(parser)
    parser.set_defaults(func=run)


def _group_size(text: str) -> int | None:
    if text.lower() in ("none", "0", "per-channel"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"group size must be an integer or 'none', got {text!r}") from None


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
            raise ConfigError(f"--{flag.replace('_', '-')} does not apply to method {method.name!r}")
        kwargs[_FIELDS.get(flag, flag)] = tuple(value) if flag == "skip" else value
    if args.embeddings:
        if "modules" not in fields:
            raise ConfigError(f"--embeddings does not apply to method {method.name!r}")
        kwargs["modules"] = ("linear", "embedding")
    return method.config_cls(**kwargs)


def _calib(args, resolved, config):
    from quantlens import zoo
    from quantlens.cli._data import load_data

    if args.calib_data:
        loaded = load_data(args.calib_data)
        return loaded.calib or loaded.test
    if resolved.zoo is not None:
        name = zoo.default_dataset_for(resolved.zoo)
        return zoo.load_dataset(name, "calib").batches(32)
    return None


def render_summary(summary: QuantSummary, console) -> None:
    """The per-layer table and totals of a quantization."""
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("layer", "type", "action", "scheme / algorithm", "bytes before", "bytes after", "reason"):
        table.add_column(col, justify="right" if col.startswith("bytes") else "left")
    for r in summary.records:
        table.add_row(r.name or "(root)", r.kind, r.action, r.detail, f"{r.bytes_before:,}" if r.bytes_before else "",
                      f"{r.bytes_after:,}" if r.bytes_after else "", r.reason)
    console.print(table)
    console.print(str(summary), markup=False, highlight=False)


def _float_from_checkpoint(spec: str, quantized):
    """The float model a checkpoint's quantized model dequantizes to (in place: the CLI
    loaded it and uses it for nothing else), and the warning."""
    from quantlens.api import dequantize

    schemes = sorted({m.scheme.describe() for m in quantized.modules() if isinstance(getattr(m, "scheme", None), QScheme)})
    try:
        model = dequantize(quantized, inplace=True)
    except InputError as exc:
        raise InputError(f"{spec} is a quantized checkpoint: {exc}") from exc
    warning = (f"{spec} is already quantized ({', '.join(schemes)}); its layers were dequantized and quantized "
               "again, so the new rounding error adds to the old one; quantize the float model for the best accuracy")
    return model, warning


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    import quantlens as ql
    from quantlens.cli._models import resolve_model

    check_out_folder(Path(args.out), "-o")
    config = build_config(args)
    resolved = resolve_model(args.model, trust_code=args.trust_code)
    model, warning = resolved.model, None
    if resolved.kind == "checkpoint":
        model, warning = _float_from_checkpoint(args.model, model)
    needs_data = getattr(config, "algorithm", None) == "gptq" or config.method in ("static",)
    calib = _calib(args, resolved, config) if needs_data else None
    if needs_data and calib is None:
        raise InputError(f"{config.method} with these settings needs calibration data; pass --calib-data")
    # a dequantized checkpoint is a model of our own: quantize it without another copy
    qm = ql.quantize(model, config, calib_data=calib, inplace=resolved.kind == "checkpoint")
    if warning:
        qm.quantlens_summary.note(warning)
    out = ql.save(qm, args.out)
    console = Console() if Console().is_terminal else Console(width=160)
    if warning:
        print(f"quantlens quantize: warning: {warning}", file=sys.stderr)
    render_summary(qm.quantlens_summary, console)
    size = sum(p.stat().st_size for p in Path(out).iterdir() if p.is_file())
    console.print(f"wrote {out} ({size / 1e6:.2f} MB on disk)", markup=False, highlight=False)
    return 0
