"""``quantlens export MODEL --format onnx|pt2|torchscript -o FILE [--method M] [--check]``.

MODEL is anything :func:`quantlens.sources.resolve_model` understands. A quantlens
checkpoint is exported as it is; a float model (zoo name, Hugging Face folder,
``module:factory``) is first quantized with ``--method`` (a preset name: ``static``,
``qat``, ``dynamic``, ``w8``, ``w4``, ``w2``), calibrated on the zoo model's calibration
split. ``--check`` runs the written file in its runtime on sample inputs (the zoo model's
test split, else the example inputs), prints its agreement with the quantlens model and
its latency, and exits 1 when the cosine or argmax agreement is under the thresholds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from quantlens.cli._args import add_trust_code, model_arg
from quantlens.errors import InputError, QuantlensError, error_line

FORMATS = ("onnx", "pt2", "torchscript")
SAMPLES = 512  # rows --check compares at most


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a quantized model to ONNX, torch.export (pt2) or TorchScript",
        description="Export MODEL (a quantlens checkpoint, or a float model quantized with "
        "--method) to a deployment file; --check runs the file and compares it with the model.",
    )
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("-o", "--out", required=True, type=Path, help="file to write")
    parser.add_argument("--format", default="onnx", help="onnx (default), pt2 or torchscript")
    parser.add_argument(
        "--method",
        help="quantize a float MODEL first with this preset (static, qat, dynamic, w8, w4, ...)",
    )
    parser.add_argument(
        "--weight-op",
        default="auto",
        help="ONNX form of weight-only Linear: auto, matmulnbits, dequantize",
    )
    parser.add_argument(
        "--check", action="store_true", help="run the exported file and compare it with the model"
    )
    parser.add_argument(
        "--min-cosine", type=float, default=0.99, help="--check fails below this mean cosine"
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="--check fails below this argmax agreement",
    )
    add_trust_code(parser)
    parser.set_defaults(func=run)


def _quantized(args, resolved):
    from quantlens import zoo
    from quantlens.compare.measure import quantize_one
    from quantlens.compare.presets import make_config
    from quantlens.compare.settings import DataSettings

    if resolved.kind == "checkpoint":
        if args.method:
            raise InputError(
                f"{args.model} is already quantized; drop --method, or give the float model"
            )
        return resolved.model
    if not args.method:
        raise InputError(
            f"{args.model} is a float model; pass --method (e.g. static, dynamic, w4) or a "
            "quantlens checkpoint"
        )
    config = make_config(args.method, resolved.model)
    calib = train = None
    if resolved.zoo is not None:
        data = zoo.default_dataset_for(resolved.zoo)
        calib = zoo.load_dataset(data, "calib").batches(32)
        if config.method == "qat":
            train = zoo.load_dataset(data, "train").batches(64)
    example = zoo.example_inputs(resolved.zoo) if resolved.zoo is not None else None
    if config.method in ("static", "qat") and calib is None:
        raise InputError(
            f"--method {args.method} needs calibration data; quantize with 'quantlens quantize' "
            "first and export the checkpoint"
        )
    data = DataSettings(None, calib_data=calib, train_data=train, example_inputs=example)
    return quantize_one(resolved.model, config, data, progress=False)


def _example(resolved):
    from quantlens import zoo

    if resolved.zoo is None:
        return None  # the model's recorded input shapes, if any
    if resolved.zoo == "minilm":
        from quantlens.zoo.minilm import tokenize
        from quantlens.zoo.sentences import all_sentences

        return tokenize(all_sentences()[:2], max_length=16)
    return zoo.example_inputs(resolved.zoo)


def _samples(resolved, example):
    """Test rows of the zoo model's data set (at most SAMPLES), else the example inputs."""
    from quantlens import zoo

    if resolved.zoo is None:
        return example
    inputs = zoo.load_dataset(zoo.default_dataset_for(resolved.zoo), "test").inputs
    if isinstance(inputs, dict) or hasattr(inputs, "keys"):
        return {k: v[:SAMPLES] for k, v in inputs.items()}
    return (inputs[:SAMPLES],)


def run(args: argparse.Namespace) -> int:
    import quantlens as ql
    from quantlens.export import check, example_inputs_of

    if args.format not in FORMATS:
        raise InputError(
            f"unknown export format {args.format!r}; choose one of {', '.join(FORMATS)}"
        )
    if not args.out.parent.is_dir():
        raise InputError(
            f"cannot write {args.out}: the folder {args.out.parent} does not exist; create it first"
        )
    resolved = model_arg(args.model, trust_code=args.trust_code)
    model = _quantized(args, resolved)
    example = _example(resolved)
    path = ql.export(
        model, args.out, format=args.format, example_inputs=example, weight_op=args.weight_op
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {args.format})")
    if not args.check:
        return 0
    samples = _samples(resolved, example)
    if samples is None:
        raise InputError("--check needs sample inputs: use a zoo model, or a checkpoint of one")
    try:
        result = check(
            model, path, example_inputs_of(model, samples), format=args.format, repeats=5
        )
    except QuantlensError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"--check could not run {path}: {error_line(exc)}") from exc
    print(result)
    if not result.passed(args.min_cosine, args.min_agreement):
        print(
            f"check failed: below --min-cosine {args.min_cosine} / --min-agreement "
            f"{args.min_agreement}"
        )
        return 1
    return 0
