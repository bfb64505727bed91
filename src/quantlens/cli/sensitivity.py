"""``quantlens sensitivity MODEL``: rank the layers by what quantizing each one costs."""

from __future__ import annotations

import argparse
import json

from quantlens.cli._analysis import add_common, check_positive, inputs_and_config
from quantlens.cli._args import int_in
from quantlens.core import distributed, torchrun


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sensitivity",
        help="quantize one layer at a time and rank the layers by the metric's drop",
        description="Quantize each layer of MODEL alone (or, with --reverse, all layers but one) "
        "with the method and rank the layers by the drop in accuracy (labels), output SQNR, "
        "or for a causal LM on a token stream the perplexity increase (percent).",
    )
    add_common(parser)
    parser.add_argument(
        "--reverse", action="store_true", help="quantize everything but one layer at a time"
    )
    parser.add_argument(
        "--top", type=int_in(1), default=None, help="show only the N most sensitive layers"
    )
    parser.add_argument("--plot", help="write the bar chart to this PNG file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Rank the layers. Under ``torchrun`` every rank joins the process group, the
    per-layer passes are spread over the ranks and rank 0 prints (and plots) the result."""
    check_positive(args.max_batches, "--max-batches")
    check_positive(args.top, "--top")
    with torchrun.joined_from_env():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from quantlens.analysis import sensitivity

    inputs, config = inputs_and_config(args)
    result = sensitivity(
        inputs.model,
        inputs.data,
        config,
        metric=args.metric,
        reverse=args.reverse,
        max_batches=args.max_batches,
        calib_data=inputs.calib,
    )
    if distributed.rank() != 0:
        return 0  # every rank holds the same result; rank 0 reports it
    if args.top:
        result.rows = result.rows[: args.top]
    if args.plot:
        from quantlens.report.analysis_plots import plot_sensitivity

        plot_sensitivity(result, args.plot)
    print(json.dumps(result.to_dict(), indent=2) if args.json else str(result))
    return 0
