"""``quantlens inspect MODEL_OR_CKPT``: per-layer weight statistics, bits and bytes; with
``--data``, activation ranges and what each observer would clip.

A checkpoint's weights are read from its files alone (no skeleton, no code run, any model
class); only activation ranges need the model itself, so only ``--data`` / ``--plot`` load it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quantlens.cli._analysis import check_positive, load_inputs
from quantlens.cli._args import add_trust_code, int_in


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="per-layer weight stats, bits and bytes of a model or checkpoint (and activation "
        "ranges)",
        description="Show each layer's weight range, spread and outliers, the bits and scheme it "
        "is stored in and the bytes it takes. With --data (float models), also each layer's "
        "activation range and the clipping range every observer chooses.",
    )
    parser.add_argument(
        "model",
        help="zoo name, quantlens checkpoint folder, or Hugging Face folder / module:factory",
    )
    add_trust_code(parser)
    parser.add_argument(
        "--data", help="calibration data for activation ranges (zoo data set or .pt/.npz)"
    )
    parser.add_argument(
        "--max-batches", type=int_in(1), default=4, help="batches for activation ranges (default 4)"
    )
    parser.add_argument(
        "--observers",
        default="minmax,percentile,mse",
        help="observers whose clipping ranges to show (default minmax,percentile,mse)",
    )
    parser.add_argument(
        "--plot", help="write the activation histograms with clipping ranges to this PNG file"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=run, calib_data=None)


def run(args: argparse.Namespace) -> int:
    from quantlens.analysis import activation_ranges
    from quantlens.analysis.weights import inspect_weights
    from quantlens.core.observers import get_observer

    check_positive(args.max_batches, "--max-batches")
    observers = tuple(o.strip() for o in args.observers.split(",") if o.strip())
    for name in observers:
        get_observer(name)  # unknown names fail before anything slow
    needs_model = bool(args.data or args.plot)
    if is_checkpoint(args.model) and not needs_model:
        from quantlens.analysis.stored_weights import inspect_checkpoint

        rows, ranges = inspect_checkpoint(args.model), None
        return _show(args, rows, ranges)
    inputs = load_inputs(args, need_data=False)
    rows = inspect_weights(inputs.model)
    ranges = None
    if needs_model:
        if inputs.calib is None:
            raise_no_data()
        ranges = activation_ranges(
            inputs.model, inputs.calib, observers=observers, max_batches=args.max_batches
        )
    if args.plot:
        from quantlens.report.analysis_plots import plot_activation_histograms

        plot_activation_histograms(ranges, args.plot)
    return _show(args, rows, ranges)


def is_checkpoint(spec: str) -> bool:
    """Whether ``spec`` names a quantlens checkpoint folder."""
    from quantlens.checkpoint import META_FILE

    try:
        return (Path(spec) / META_FILE).is_file()
    except (OSError, ValueError):  # a name too long or with a NUL is not a folder
        return False


def _show(args: argparse.Namespace, rows, ranges) -> int:
    from quantlens.analysis.weights import format_weights

    if args.json:
        print(
            json.dumps(
                {
                    "weights": [r.to_dict() for r in rows],
                    "ranges": ranges.to_dict() if ranges else None,
                },
                indent=2,
            )
        )
    else:
        print(format_weights(rows))
        if ranges is not None:
            print()
            print(ranges)
    return 0


def raise_no_data() -> None:
    from quantlens.errors import InputError

    raise InputError("activation ranges need data: give --data (a zoo data set or a .pt/.npz file)")
