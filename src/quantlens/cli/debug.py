"""``quantlens debug MODEL --data DATA --method M``: find the layers that cost accuracy,
say what to do about each, and optionally write a mixed-precision plan as a config file
that ``quantlens quantize --config FILE`` applies."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quantlens.cli._analysis import add_common, check_positive, inputs_and_config
from quantlens.cli._args import float_in, int_in
from quantlens.errors import InputError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "debug",
        help="find the layers quantization hurts and suggest a fix per layer; write a "
        "mixed-precision plan",
        description="Measure the method's drop, each layer's sensitivity, layer-by-layer error and "
        "(for int8 methods) activation ranges, then print one concrete suggestion per problem "
        "layer: raise its bits, per-channel weights, a percentile/MSE observer, skip it, or QAT.",
    )
    add_common(parser)
    parser.add_argument(
        "--top", type=int_in(1), default=5, help="at most this many problem layers (default 5)"
    )
    parser.add_argument(
        "--max-drop",
        type=float_in(0, 100),
        default=1.0,
        help="accuracy (or cosine) points the plan may lose (default 1.0)",
    )
    parser.add_argument(
        "--min-sqnr-db",
        type=float_in(-200, 400),
        default=None,
        help="the plan's budget when the metric is SQNR (default 30 dB)",
    )
    parser.add_argument(
        "--max-ppl-increase",
        type=float_in(0, 1e6),
        default=None,
        help="the plan's budget for a causal LM scored by perplexity: the increase vs float "
        "(percent) it may cost (default 5, as compare's)",
    )
    parser.add_argument(
        "--candidates",
        default="8,4,2,float",
        help="bit widths the plan may choose per layer (default 8,4,2,float)",
    )
    parser.add_argument(
        "--plan-out", help="search a mixed-precision plan and write its config JSON here"
    )
    parser.add_argument("--plots", help="write the analysis PNGs into this folder")
    parser.set_defaults(func=run)


def parse_candidates(text: str) -> tuple:
    out = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part in ("float", "none", "fp32"):
            out.append(None)
        elif part.isdigit() and int(part) >= 1:
            out.append(int(part))
        else:
            raise InputError(f"--candidates: {part!r} is not a bit width; give e.g. 8,4,2,float")
    if not out:
        raise InputError("--candidates is empty; give e.g. 8,4,2,float")
    return tuple(out)


def run(args: argparse.Namespace) -> int:
    import quantlens as ql
    from quantlens.analysis import (
        activation_ranges,
        advise,
        compare_layers,
        search_plan,
        sensitivity,
    )
    from quantlens.analysis.advice import problem_layers, quantizes_activations
    from quantlens.analysis.scoring import Evaluator
    from quantlens.methods.base import check_patterns

    check_positive(args.max_batches, "--max-batches")
    check_positive(args.top, "--top")
    candidates = parse_candidates(args.candidates)
    inputs, config = inputs_and_config(args)
    model = inputs.model
    check_patterns(config, model)  # a config file naming absent layers fails here, by name

    ev = Evaluator(model, inputs.data, metric=args.metric, max_batches=args.max_batches)
    sens = sensitivity(
        model,
        inputs.data,
        config,
        max_batches=args.max_batches,
        calib_data=inputs.calib,
        evaluator=ev,
    )
    qm = ql.quantize(model, config, calib_data=inputs.calib, progress=False)
    layers = compare_layers(model, qm, inputs.data, max_batches=2)
    ranges = None
    if quantizes_activations(config):
        names = [r.name for r in problem_layers(sens, top=args.top)]
        modules = dict(model.named_modules())
        names = [n for n in names if n in modules]
        if names:
            ranges = activation_ranges(
                model,
                inputs.calib,
                layers=names,
                observers=("minmax", "percentile", "mse"),
                max_batches=4,
            )
    tips = advise(config, sens, layers=layers, ranges=ranges, top=args.top)
    plan = None
    if args.plan_out:
        plan = search_plan(
            model,
            inputs.data,
            candidates=candidates,
            max_accuracy_drop=args.max_drop,
            min_sqnr_db=args.min_sqnr_db,
            max_ppl_increase=args.max_ppl_increase,
            method=config,
            metric=args.metric,
            max_batches=args.max_batches,
            calib_data=inputs.calib,
            evaluator=ev,
        )
        _write_json(Path(args.plan_out), plan.config.to_dict())
    if args.plots:
        from quantlens.report.analysis_plots import write_analysis_plots

        write_analysis_plots(args.plots, sensitivity=sens, layers=layers, ranges=ranges, plan=plan)

    if args.json:
        print(
            json.dumps(
                {
                    "config": config.to_dict(),
                    "sensitivity": sens.to_dict(),
                    "layers": layers.to_dict(),
                    "advice": [t.to_dict() for t in tips],
                    "plan": plan.to_dict() if plan else None,
                },
                indent=2,
            )
        )
        return 0
    unit = sens.unit
    print(
        f"{type(config).__name__}: {sens.metric} {sens.baseline:.2f}{unit} float -> "
        f"{sens.full_value:.2f}{unit} quantized (drop {sens.full_drop:.3g} {sens.loss_unit}; "
        f"{sens.samples} samples)"
    )
    if layers.jump is not None:
        j = layers.jump
        print(
            f"error jumps at {j.name} ({j.kind}): alone (fed the float input) {j.own_sqnr_db:.1f} "
            f"dB SQNR, in the quantized model {j.out_sqnr_db:.1f} dB (input {j.in_sqnr_db:.1f} dB)"
        )
    if not tips:
        print("no single layer stands out; the quantized model is close to float on this data")
    for tip in tips:
        print(f"- {tip}")
    if plan is not None:
        print()
        print(plan)
        print(
            f"plan written to {args.plan_out}: apply it with  quantlens quantize {args.model} "
            f"--config {args.plan_out} -o QUANTIZED_DIR"
        )
    return 0


def _write_json(path: Path, data: dict) -> None:
    """Write atomically (a temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
