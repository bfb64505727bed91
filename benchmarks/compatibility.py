"""The compatibility matrix: every quantlens method on models nobody here wrote.

Run: python benchmarks/compatibility.py [--only bert,t5,...] [--methods dynamic,w4,...]
                                        [--threads 1] [--timeout 300] [--docs-only]
Writes benchmarks/results/compatibility.json and docs/compatibility.md, and prints a table.

Rows are the models of ``compat_cases.py``: tiny Hugging Face architectures built offline
from their configs (random weights) and the classic CNNs of ``quantlens.zoo.classic``.
Columns are the methods, each through the public API with its defaults:

- ``dynamic``: ``ql.quantize(m, ql.Dynamic())``
- ``static``: ``ql.quantize(m, ql.Static(), calib_data=batches)``
- ``qat``: ``ql.prepare_qat(m, ql.QAT(), example_inputs=first batch)``, the calibration
  batches run forward in training mode and one backward pass (gradients flow, no optimizer
  step: the weights stay those of the float model), then ``ql.convert``
- ``w8`` / ``w4``: ``ql.quantize(m, ql.WeightOnly(bits=8 | 4))``
- ``w4-gptq``: ``ql.WeightOnly(bits=4, algorithm="gptq")`` with the calibration batches
- ``w2-hqq``: ``ql.WeightOnly(bits=2, algorithm="hqq")``

Each cell is one of:

- ``runs``: the quantized model ran on a held-out batch (another batch size than
  calibration); ``cosine`` is the cosine similarity of its main output with the float
  model's on that batch (over the whole batch, flattened);
- ``declined``: quantlens refused with a ``QuantlensError``; the one-line message says why;
- ``error``: quantizing raised anything else (a bug);
- ``broken``: quantizing returned a model that raises at its first inference, or returns
  NaN/inf or another shape (a bug);
- ``crash`` / ``timeout``: the process died (a segfault, ...) or ran out of time (a bug).

Each model runs in its own child process; when a cell kills it, the cell is recorded as a
crash and a new child carries on with the model's remaining methods.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "compatibility.json"
DOCS = HERE.parent / "docs" / "compatibility.md"
METHODS = ("dynamic", "static", "qat", "w8", "w4", "w4-gptq", "w2-hqq")
MARK = "@@compat "  # prefix of the child's protocol lines on stdout
FAILURES = ("error", "broken", "crash", "timeout")


@dataclass
class Cell:
    """One model x method result."""

    model: str
    method: str
    status: str  # runs | declined | error | broken | crash | timeout
    cosine: float | None = None
    message: str = ""
    quantized: int | None = None  # layers quantized
    left_float: int | None = None  # weight-holding layers left in float
    seconds: float = 0.0


# --- one cell, in the child process ----------------------------------------------------------


def quantize(method: str, model, case):
    """``model`` quantized by ``method`` through the public API (see the module docstring)."""
    import compat_cases as cc

    import quantlens as ql

    calib = cc.calibration(case)
    if method == "dynamic":
        return ql.quantize(model, ql.Dynamic())
    if method == "static":
        return ql.quantize(model, ql.Static(), calib_data=calib)
    if method == "qat":
        first = calib[0]  # the example for graph capture, in the form the batches have
        qat = ql.prepare_qat(
            model, ql.QAT(), example_inputs=first if isinstance(first, dict) else (first,)
        )
        qat.train()
        for batch in calib:
            out = cc.main_output(case, cc.run(qat, batch))
        out.float().square().mean().backward()  # the straight-through gradients reach the weights
        qat.zero_grad(set_to_none=True)
        return ql.convert(qat.eval())
    bits, _, algorithm = method[1:].partition("-")
    config = ql.WeightOnly(bits=int(bits), algorithm=algorithm or "rtn")
    return ql.quantize(model, config, calib_data=calib if algorithm == "gptq" else None)


def run_cell(case, method: str, model, reference) -> Cell:
    """Quantize ``model`` (the float model of ``case``) with ``method``, run it on the test
    batch and compare its main output with ``reference`` (the float model's)."""
    import compat_cases as cc
    import torch

    from quantlens.core.metrics import cosine_similarity
    from quantlens.errors import QuantlensError, error_line

    start = time.perf_counter()
    cell = Cell(case.name, method, "runs")
    try:
        qm = quantize(method, model, case)
    except QuantlensError as exc:
        cell.status, cell.message = "declined", error_line(exc)
    except Exception as exc:  # noqa: BLE001 -- any other exception is what the matrix looks for
        cell.status, cell.message = "error", f"{type(exc).__name__}: {error_line(exc)}"
    else:
        summary = getattr(qm, "quantlens_summary", None)
        if summary is not None:
            cell.quantized = len(summary.quantized)
            cell.left_float = sum(1 for r in summary.skipped if r.bytes_before)
        try:
            with torch.no_grad():
                out = cc.main_output(case, cc.run(qm, cc.test_batch(case))).float()
        except Exception as exc:  # noqa: BLE001
            cell.status = "broken"
            cell.message = f"raises at first inference: {type(exc).__name__}: {error_line(exc)}"
        else:
            if out.shape != reference.shape:
                cell.status = "broken"
                cell.message = f"output shape {tuple(out.shape)}, float {tuple(reference.shape)}"
            elif not torch.isfinite(out).all():
                cell.status, cell.message = "broken", "the output has NaN or inf values"
            else:
                cell.cosine = round(float(cosine_similarity(reference.double(), out.double())), 6)
    cell.seconds = round(time.perf_counter() - start, 2)
    return cell


def float_reference(case):
    """The float model of ``case`` and its main output on the test batch."""
    import compat_cases as cc
    import torch

    model = cc.build(case)
    with torch.no_grad():
        return model, cc.main_output(case, cc.run(model, cc.test_batch(case))).float()


def child(name: str, methods: list[str], threads: int) -> None:
    """Run ``methods`` on one model, one protocol line before and after each cell."""
    import logging
    import warnings

    import torch

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import compat_cases as cc

    case = cc.CASES[name]
    model, reference = float_reference(case)
    for method in methods:
        print(MARK + json.dumps({"start": method}), flush=True)
        cell = run_cell(case, method, model, reference)
        print(MARK + json.dumps({"cell": asdict(cell)}), flush=True)


# --- the parent: one child per model ---------------------------------------------------------


def run_model(name: str, methods: list[str], threads: int, timeout: float) -> list[Cell]:
    """All ``methods`` on model ``name``, each child process carrying on after a crash."""
    cells: list[Cell] = []
    todo = list(methods)
    while todo:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            name,
            "--methods",
            ",".join(todo),
            "--threads",
            str(threads),
        ]
        started, deadline = None, time.monotonic() + timeout
        env = {**os.environ, "PYTHONPATH": _pythonpath()}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                check=False,
                env=env,
                timeout=max(1.0, deadline - time.monotonic()),
            )
            stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            stderr, rc = "", None
        for line in stdout.splitlines():
            if not line.startswith(MARK):
                continue
            msg = json.loads(line[len(MARK) :])
            if "start" in msg:
                started = msg["start"]
            else:
                cells.append(Cell(**msg["cell"]))
                todo.remove(msg["cell"]["method"])
                started = None
        if started is None and todo:  # died before starting a cell: building the model failed
            why = _last_line(stderr) if rc is not None else f"timed out after {timeout:.0f} s"
            cells += [
                Cell(name, m, "error", message=f"the float model could not be built: {why}")
                for m in todo
            ]
            break
        if started is not None:
            seconds = round(time.perf_counter() - t0, 2)
            if rc is None:
                cells.append(
                    Cell(name, started, "timeout", message=f"over {timeout:.0f} s", seconds=seconds)
                )
            else:
                cells.append(
                    Cell(name, started, "crash", message=_exit_reason(rc, stderr), seconds=seconds)
                )
            todo.remove(started)
    order = {m: i for i, m in enumerate(methods)}
    return sorted(cells, key=lambda c: order[c.method])


def _pythonpath() -> str:
    src = str(HERE.parent / "src")
    return os.pathsep.join(p for p in (src, str(HERE), os.environ.get("PYTHONPATH", "")) if p)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no message"


def _exit_reason(rc: int, stderr: str) -> str:
    if rc < 0:
        import signal

        return f"the process died of {signal.Signals(-rc).name}"
    return f"the process exited with code {rc}: {_last_line(stderr)}"


# --- output ------------------------------------------------------------------------------------


def cell_text(cell: dict) -> str:
    """A short table entry: ``0.9987 (12/14)`` or ``declined`` / the failure kind."""
    if cell["status"] == "runs":
        layers = (
            f" ({cell['quantized']} q, {cell['left_float']} f)"
            if cell.get("quantized") is not None
            else ""
        )
        return f"{cell['cosine']:.4f}{layers}"
    return cell["status"].upper() if cell["status"] in FAILURES else cell["status"]


def counts(cells: list[dict]) -> dict[str, int]:
    """How many cells have each status."""
    out: dict[str, int] = {}
    for c in cells:
        out[c["status"]] = out.get(c["status"], 0) + 1
    return out


def environment() -> dict:
    """The run's software and machine (the date is stamped by ``write_results``)."""
    import torch
    import transformers

    return {
        "benchmark": "compatibility matrix",
        "torch": torch.__version__,
        "versions": {"transformers": transformers.__version__, "python": platform.python_version()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }


def print_row(name: str, cells: list[Cell], methods: list[str]) -> None:
    by = {c.method: asdict(c) for c in cells}
    row = " ".join(f"{cell_text(by[m]) if m in by else '':>22}" for m in methods)
    print(f"{name:<16} {row}", flush=True)


def merge(previous: dict | None, cells: list[Cell]) -> list[dict]:
    """The new cells, plus the previous results' cells that this run did not redo."""
    redone = {(c.model, c.method) for c in cells}
    kept = [c for c in (previous or {}).get("cells", []) if (c["model"], c["method"]) not in redone]
    return kept + [asdict(c) for c in cells]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated model names (default: all)")
    ap.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, from {','.join(METHODS)}"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads per child process")
    ap.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per model (its child processes)"
    )
    ap.add_argument(
        "--docs-only", action="store_true", help="regenerate docs/compatibility.md from the JSON"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    if args.child:
        return child(args.child, methods, args.threads)
    from _results import write_results
    from compat_docs import write_docs

    if args.docs_only:
        write_docs(json.loads(RESULTS.read_text()), DOCS)
        return None
    import compat_cases as cc

    unknown = [m for m in methods if m not in METHODS]
    names = args.only.split(",") if args.only else list(cc.CASES)
    unknown += [n for n in names if n not in cc.CASES]
    if unknown:
        sys.exit(
            f"unknown model or method: {', '.join(unknown)}; models: {', '.join(cc.CASES)}; "
            f"methods: {', '.join(METHODS)}"
        )
    print(f"{'model':<16} " + " ".join(f"{m:>22}" for m in methods), flush=True)
    cells: list[Cell] = []
    for name in names:
        row = run_model(name, methods, args.threads, args.timeout)
        print_row(name, row, methods)
        cells += row
    partial = args.only or len(methods) < len(METHODS)
    previous = json.loads(RESULTS.read_text()) if partial and RESULTS.is_file() else None
    result = {
        **environment(),
        "command": "python benchmarks/compatibility.py",
        "methods": list(METHODS),
        "models": [{"name": n, "family": c.family} for n, c in cc.CASES.items()],
        "cells": merge(previous, cells),
    }
    write_results(RESULTS, result)  # stamps the date, regenerates docs/performance.md
    write_docs(json.loads(RESULTS.read_text()), DOCS)
    print(
        f"counts: {counts(result['cells'])}; wrote {RESULTS.relative_to(HERE.parent)} and "
        f"{DOCS.relative_to(HERE.parent)}"
    )
    return None


if __name__ == "__main__":
    main()
