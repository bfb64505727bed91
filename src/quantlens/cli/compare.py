"""``quantlens compare``: float vs every method on one model and data, a recommendation,
and a report (HTML, Markdown, JSON, PNG plots) in one folder.

With no arguments it compares the default methods on the ``digits-cnn`` zoo model and the
digits test split, writing into ``./quantlens-report/``.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import torch

from quantlens.cli._args import (
    add_trust_code,
    check_out_folder,
    float_in,
    int_in,
    max_threads,
    model_arg,
    path_kind,
    shorten,
)
from quantlens.cli._lm_options import add_lm_options, float_note, lm_measure, lm_parts
from quantlens.compare import Budget, DataSettings, Hooks, Timing
from quantlens.compare import compare as run_compare
from quantlens.compare.lm import is_causal_lm
from quantlens.compare.measure import reference_outputs
from quantlens.compare.presets import (
    PRESETS,
    check_names,
    default_methods,
    make_config,
    parse_grid,
    sweep_configs,
)
from quantlens.compare.results import Comparison, Row
from quantlens.compare.runtimes import require_runtimes
from quantlens.compare.settings import RUNTIMES, check_runtimes
from quantlens.core import distributed, torchrun
from quantlens.errors import InputError, QuantizationFailedError
from quantlens.report import Report
from quantlens.sources import load_data_for

DEFAULT_MODEL = "digits-cnn"
DEFAULT_OUT = "quantlens-report"
DEFAULT_REPS = 20
DEFAULT_THREADS = 1


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="measure float vs quantization methods on a model and data; write a report",
        description="Quantize MODEL with each method, measure size, latency, peak memory and "
        "accuracy against float, recommend one, and write report.html/report.md/results.json and "
        "plots into --out. With no arguments: digits-cnn on the digits test split.",
    )
    parser.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help="zoo name, Hugging Face model folder, quantlens checkpoint, or module:factory "
        f"(default: {DEFAULT_MODEL})",
    )
    add_trust_code(parser)
    parser.add_argument(
        "--data",
        help="zoo data set, .pt/.npz of tensors (inputs, optional labels), or an "
        "image folder (default: the zoo model's data set)",
    )
    parser.add_argument(
        "--calib-data", help="calibration data (default: the zoo set's calib split, else --data)"
    )
    parser.add_argument(
        "--train-data", help="labelled data for QAT (default: the zoo set's train split)"
    )
    parser.add_argument(
        "--methods",
        help=f"comma-separated: {', '.join(PRESETS)} (default: {','.join(default_methods())})",
    )
    parser.add_argument(
        "--max-drop",
        type=float_in(0, 100),
        default=1.0,
        help="accuracy points the recommendation may lose vs float (default 1.0)",
    )
    parser.add_argument(
        "--objective",
        choices=("latency", "size"),
        default="latency",
        help="what the recommendation minimises (default latency)",
    )
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT})"
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite the output folder if it exists"
    )
    parser.add_argument(
        "--threads",
        type=int_in(1, max_threads()),
        default=DEFAULT_THREADS,
        help=f"torch threads for the whole run and the timings (default {DEFAULT_THREADS}: "
        "the most repeatable; raise it to measure multi-threaded serving)",
    )
    parser.add_argument(
        "--reps",
        type=int_in(1),
        default=DEFAULT_REPS,
        help=f"timed calls per model (default {DEFAULT_REPS})",
    )
    parser.add_argument(
        "--qat-epochs", type=int_in(1), default=1, help="QAT fine-tuning epochs (default 1)"
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory child processes"
    )
    parser.add_argument(
        "--runtime",
        default="torch",
        metavar="RUNTIMES",
        help=f"comma-separated: {', '.join(RUNTIMES)} (default torch); torch,onnxruntime adds, "
        "after each PyTorch row, the model exported to ONNX and measured in ONNX Runtime "
        "(needs quantlens[onnx])",
    )
    parser.add_argument(
        "--sweep",
        nargs="?",
        const="auto",
        metavar="METHOD",
        help="try a grid of one method's settings (default: the first --methods entry, "
        "else static); the default grids vary observer, per-channel and backend (static), "
        "bits and group size (w4), bits, per-channel and backend (qat)",
    )
    parser.add_argument(
        "--grid",
        nargs="+",
        metavar="KEY=V1,V2",
        help="the sweep's grid instead of the default, e.g. --grid observer=minmax,mse "
        "per_channel=true,false backend=x86,onednn (implies --sweep)",
    )
    parser.add_argument(
        "--analysis",
        action="store_true",
        help="also rank the layers of the recommended method by sensitivity (quantize one at a "
        "time) and add sensitivity.png and a 'Where the error comes from' section",
    )
    add_lm_options(parser)
    parser.add_argument(
        "--json", action="store_true", help="print the results as JSON instead of a table"
    )
    parser.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The command, with every default spelled out, that reproduces this run."""
    parts = ["quantlens", "compare", args.model]
    for flag in ("data", "calib_data", "train_data", "methods", "sweep", "threads"):
        value = getattr(args, flag)
        if value is not None:
            parts += [f"--{flag.replace('_', '-')}", str(value)]
    if getattr(args, "grid", None):
        parts += ["--grid", *args.grid]
    if getattr(args, "runtime", "torch") != "torch":
        parts += ["--runtime", ",".join(check_runtimes(args.runtime))]
    parts += [
        "--max-drop",
        f"{args.max_drop:g}",
        *lm_parts(args),
        "--objective",
        args.objective,
        "--reps",
        str(args.reps),
        "--qat-epochs",
        str(args.qat_epochs),
        "--out",
        args.out,
    ]
    parts += [
        f"--{f}"
        for f in ("no-memory", "analysis", "trust-code", "force", "json")
        if getattr(args, f.replace("-", "_"), False)
    ]
    # a name that is not UTF-8 (undecodable bytes arrive as surrogates) is written as \xNN,
    # so the report files that record the command can be written as UTF-8
    return os.fsencode(shlex.join(parts)).decode("utf-8", "backslashreplace")


def _method_names(args: argparse.Namespace) -> list[str] | None:
    """The --methods names, checked (bad names fail before anything slow runs)."""
    names = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    if names is not None:
        check_names(names)
        if not names:
            raise InputError("--methods is empty; give names such as dynamic,static,w4")
    return names


def _sweep_target(args: argparse.Namespace, names: list[str] | None) -> str | None:
    if not args.sweep and not getattr(args, "grid", None):
        return None
    if args.sweep in (None, "auto"):
        return names[0] if names else "static"
    return args.sweep


def _configs(args: argparse.Namespace, model=None) -> dict:
    """The configs to compare: --methods presets (or the defaults), or the --sweep grid;
    weight-only presets cover ``model``'s convolutions (:func:`make_config`)."""
    names = _method_names(args)
    target = _sweep_target(args, names)
    if target is not None:
        grid = parse_grid(args.grid, target) if getattr(args, "grid", None) else None
        return sweep_configs(target, grid, model=model)
    return {n: make_config(n, model) for n in (names or default_methods())}


def _check_out(out: Path, force: bool) -> None:
    """Fail now, before anything slow, if ``out`` cannot become the report folder."""
    check_out_folder(out, "--out")
    if path_kind(out) == "dir" and any(out.iterdir()) and not force:
        raise InputError(
            f"{shorten(out)} already exists and is not empty; pass --force to overwrite it, "
            "or --out another folder"
        )


def _prepare_out(out: Path) -> bool:
    """Create ``out`` (an earlier report there stays until the new one replaces it whole).

    Returns:
        Whether ``out`` was created now (so an empty one can be removed again).
    """
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"--out {out}: cannot create the report folder ({exc.strerror or exc}); "
            "give a folder you can write to"
        ) from exc
    return created


def _remove_if_empty(out: Path) -> None:
    try:
        out.rmdir()  # only succeeds when empty
    except OSError:
        pass


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    if args.reps < 1:
        raise InputError(f"--reps must be >= 1, got {args.reps}")
    _configs(args)  # bad names and grids fail before anything slow runs
    require_runtimes(check_runtimes(getattr(args, "runtime", "torch")))  # and runtimes
    # under torchrun: join the group; the rows are spread over the ranks, rank 0 writes
    threads_before = torch.get_num_threads()
    with torchrun.joined_from_env():
        try:
            distributed.on_rank0(
                lambda: _check_out(Path(args.out), args.force), what="checking --out"
            )
            torch.set_num_threads(args.threads)
            return _run(args)
        finally:
            torch.set_num_threads(threads_before)


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    source = model_arg(args.model, trust_code=args.trust_code)
    # a checkpoint is compared against the float model it was made from
    float_source = source.float_source(trust_code=args.trust_code)
    model = float_source.model
    extra = {"checkpoint": source.model} if source.kind == "checkpoint" else {}
    configs = {**extra, **_configs(args, model)}
    if not args.data and source.data is None:
        raise InputError(
            "give --data for a model that is not from the zoo (a zoo data set, a .pt/.npz/.csv "
            "file or an image folder)"
        )
    loaded = load_data_for(
        source, args.data, calib_data=args.calib_data, train_data=args.train_data
    )
    data = DataSettings(
        loaded.test,
        loaded.calib,
        loaded.train,
        qat_epochs=args.qat_epochs,
        float_note=float_note(float_source.zoo),
    )
    if not is_causal_lm(model, data.data, lm_measure(args)):  # a token stream is scored in windows
        reference_outputs(model, data.data, limit=1)  # data that does not fit fails before --out
    created = _prepare_out(out) if distributed.rank() == 0 else False
    try:
        return _compare_into(args, out, model, configs, data)
    finally:
        if created:
            _remove_if_empty(out)  # an error or Ctrl-C before the first row leaves no empty folder


def _compare_into(
    args: argparse.Namespace, out: Path, model, configs: dict, data: DataSettings
) -> int:
    from rich.console import Console

    console = Console() if Console().is_terminal else Console(width=140)
    err = Console(stderr=True)
    command = command_line(args)

    lead = distributed.rank() == 0  # under torchrun only rank 0 prints and writes

    def on_start(name: str, index: int, total: int) -> None:
        if lead:
            err.print(f"[dim][{index}/{total}][/] {name}")

    budget = Budget(args.max_drop, args.objective, args.max_ppl_increase)

    def on_row(row: Row, comparison: Comparison) -> None:  # results.json after every row
        if not lead:
            return
        Report(
            comparison,
            max_accuracy_drop=budget.max_accuracy_drop,
            objective=budget.objective,
            max_perplexity_increase=budget.max_perplexity_increase,
        ).to_json(out / "results.json")

    report = Report(
        run_compare(
            model,
            configs,
            data=data,
            timing=Timing(reps=args.reps, threads=args.threads),
            measure=lm_measure(args),
            budget=budget,
            hooks=Hooks(command=command, on_start=on_start, on_row=on_row),
        )
    )
    if not lead:
        return 130 if report.interrupted else 0  # rank 0 holds the same rows and reports them
    if not report.rows:  # Ctrl-C before the float row was measured: nothing to report
        err.print("interrupted before the first row was measured; nothing written")
        return 130
    write_all(report, out)
    if args.json:
        print(report.to_json())
    else:
        from rich.markup import escape

        from quantlens.report.terminal import declined, failures, to_rich

        console.print(to_rich(report.rows, title="quantlens compare", task=report.task))
        for line in failures(report.rows):
            console.print(f"[red]failed[/] {escape(line)}")
        for line in declined(report.rows):
            console.print(f"[yellow]float[/] {escape(line)}")
        if report.comparison.settings.float_note:
            console.print(f"note: {escape(report.comparison.settings.float_note)}")
        console.print(f"[bold]{report.recommendation()}[/]")
        analysis = report.analysis
        if analysis is not None and analysis.sensitivity.rows:
            top = analysis.sensitivity.rows[0]
            console.print(
                f"most sensitive layer of {escape(analysis.row)}: {escape(top.name)} "
                f"(drop {top.drop:.3g} {analysis.sensitivity.loss_unit}); "
                f"see {out / 'sensitivity.png'}"
            )
        console.print(f"report: {out / 'report.html'}")
    if report.interrupted:
        err.print(f"interrupted: {len(report.rows)} row(s) kept in {out / 'results.json'}")
        return 130
    failed = [r for r in report.rows if not r.ok]
    if failed:
        raise QuantizationFailedError(
            f"{len(failed)} method(s) failed "
            f"({'; '.join(f'{r.name}: {r.error}' for r in failed)[:300]}); the others are in the "
            "report"
        )
    return 0


def write_all(report: Report, out: Path) -> None:
    """report.html, report.md, results.json, results.csv and the PNG plots into ``out``,
    whole or not at all (:meth:`Report.save`)."""
    report.save(out)


__all__ = ["command_line", "register", "run", "write_all"]
