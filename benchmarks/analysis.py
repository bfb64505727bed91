"""Time of the analysis tools: a full sensitivity pass and the mixed-precision planner on
digits-cnn and MiniLM, and how a sensitivity pass scales with the number of layers when
the float outputs are cached (the float model runs once) vs rerun for every layer.

Run: python benchmarks/analysis.py [--threads 1] [--repeats 5] [--skip-minilm]

Writes benchmarks/results/analysis.json, prints a table, and rewrites the table between the
``analysis-benchmark`` markers in docs/analysis.md, so the documentation quotes this run.

- The short cases (the MLP scaling series and digits-cnn) run ``--repeats`` times, round
  robin (every case once per round, so a noisy neighbour slows them alike); the JSON holds
  the median and p95 seconds. MiniLM runs once (its passes take tens of seconds); its
  ``repeats`` is 1 and median = p95 = that run.
- ``model_calls`` is counted, not computed: a global forward hook counts every top-level
  module call (one per batch; calibration and tracing calls included) during the case.
  ``passes`` is that count divided by the batches of one pass over the data.
- ``x_cached`` is the naive pass's median over the cached one's, in the same process.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import re
import time
import warnings
from pathlib import Path

import torch
from _results import write_results
from _timing import summarize
from torch import nn

from quantlens import quantize, zoo
from quantlens.analysis import search_plan, sensitivity
from quantlens.analysis.scoring import Evaluator
from quantlens.analysis.sensitivity import Variants
from quantlens.compare.presets import make_config
from quantlens.core.data import count_batches
from quantlens.eval.quality import collect_outputs
from quantlens.eval.size import memory_bytes
from quantlens.methods import WeightOnly

RESULTS = Path(__file__).resolve().parent / "results" / "analysis.json"
DOC = Path(__file__).resolve().parent.parent / "docs" / "analysis.md"
DOC_START, DOC_END = "<!-- analysis-benchmark:start -->", "<!-- analysis-benchmark:end -->"
DEPTHS = (4, 8, 16, 32)
MINILM_SENTENCES = 104


# --- counting and timing -----------------------------------------------------------------------


class ForwardCounter:
    """Counts top-level module calls (a call made while no other module call is running)."""

    def __init__(self) -> None:
        self.calls = 0
        self._depth = 0

    def _pre(self, module, args) -> None:
        if self._depth == 0:
            self.calls += 1
        self._depth += 1

    def _post(self, module, args, output) -> None:
        self._depth -= 1

    @contextlib.contextmanager
    def counting(self):
        pre = nn.modules.module.register_module_forward_pre_hook(self._pre)
        post = nn.modules.module.register_module_forward_hook(self._post, always_call=True)
        try:
            yield self
        finally:
            pre.remove()
            post.remove()


def run_case(fn) -> tuple[object, float, int]:
    """``(result, seconds, top-level model calls)`` of one run of ``fn``."""
    counter = ForwardCounter()
    with counter.counting():
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    return out, seconds, counter.calls


def repeated(cases: dict, repeats: int) -> dict:
    """Run every case ``repeats`` times round robin; ``{name: (last result, stats, calls)}``."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    last: dict[str, tuple] = {}
    for _ in range(repeats):
        for name, fn in cases.items():
            out, seconds, calls = run_case(fn)
            times[name].append(seconds)
            last[name] = (out, calls)
    return {name: (last[name][0], seconds_stats(times[name]), last[name][1]) for name in cases}


def seconds_stats(times: list[float]) -> dict:
    s = summarize(times)
    return {"median_s": s["median_ms"] / 1e3, "p95_s": s["p95_ms"] / 1e3, "repeats": s["repeats"]}


# --- cases ---------------------------------------------------------------------------------------


def mlp(depth: int, width: int = 256) -> nn.Module:
    torch.manual_seed(0)
    layers = [m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())]
    return nn.Sequential(*layers, nn.Linear(width, 10)).eval()


def naive_sensitivity(model: nn.Module, data, config) -> int:
    """The same one-layer-at-a-time pass, rerunning the float model for every layer."""
    variants = Variants(model, config)
    work = copy.deepcopy(model)
    for name in variants.names:
        reference = collect_outputs(model, data)  # no cache: the float model again
        with variants.swapped(work, name, variants.full) as variant:
            collect_outputs(variant, data)
        del reference
    return len(variants.names)


def scaling(rows: list[dict], repeats: int) -> None:
    config = make_config("w4")
    x = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    per_pass = count_batches(x)
    for depth in DEPTHS:
        model = mlp(depth)
        cases = {
            "cached": lambda m=model: sensitivity(
                m, x, config, evaluator=Evaluator(m, x, metric="sqnr"), progress=False
            ),
            "naive": lambda m=model: naive_sensitivity(m, x, config),
        }
        done = repeated(cases, repeats)
        res, cached, calls = done["cached"]
        _, naive, naive_calls = done["naive"]
        n = len(res.rows)
        rows.append(
            {
                "case": f"mlp depth {depth}",
                "what": "sensitivity w4 (cached float)",
                "layers": n,
                **cached,
                "model_calls": calls,
                "passes": calls / per_pass,
            }
        )
        rows.append(
            {
                "case": f"mlp depth {depth}",
                "what": "sensitivity w4 (float rerun per layer)",
                "layers": n,
                **naive,
                "model_calls": naive_calls,
                "passes": naive_calls / per_pass,
                "x_cached": naive["median_s"] / cached["median_s"],
            }
        )


def digits(rows: list[dict], repeats: int) -> None:
    model = zoo.load_model("digits-cnn")
    test = zoo.load_dataset("digits", "test")
    data = (test.inputs, test.labels)  # 450 images
    per_pass = count_batches(data)
    method = WeightOnly(bits=4, group_size=None, modules=("linear", "conv2d"))
    u4_size = memory_bytes(quantize(model, method))[0]
    cases = {
        "sensitivity": lambda: sensitivity(model, data, method, progress=False),
        "planner": lambda: search_plan(
            model, data, method=method, candidates=(8, 4, 2), target_size=u4_size
        ),
    }
    done = repeated(cases, repeats)
    res, stats, calls = done["sensitivity"]
    rows.append(
        {
            "case": "digits-cnn",
            "what": "sensitivity w4 per-channel (6 Conv2d + Linear)",
            "layers": len(res.rows),
            **stats,
            "model_calls": calls,
            "passes": calls / per_pass,
        }
    )
    plan, stats, calls = done["planner"]
    rows.append(
        _plan_row(
            "digits-cnn", "planner 8/4/2 at the size of uniform w4", plan, stats, calls, per_pass
        )
    )


def _plan_row(case: str, what: str, plan, stats: dict, calls: int, per_pass: int) -> dict:
    u4 = next(u for u in plan.uniform if u.bits == 4)
    return {
        "case": case,
        "what": what,
        "layers": len(plan.layers),
        **stats,
        "model_calls": calls,
        "passes": calls / per_pass,
        "plan_drop": plan.measured_drop,
        "plan_size_mb": plan.size_bytes / 1e6,
        "uniform_w4_drop": u4.drop,
        "uniform_w4_size_mb": u4.size_bytes / 1e6,
        "bits": plan.bits,
    }


def minilm_data() -> list[dict]:
    """104 test sentences in 4 batches of similar length, each cut to its longest sentence."""
    inputs = {
        k: v[:MINILM_SENTENCES] for k, v in zoo.load_dataset("sentences", "test").inputs.items()
    }
    lengths = inputs["attention_mask"].sum(1)
    order = torch.argsort(lengths, stable=True)
    batches = []
    for start in range(0, MINILM_SENTENCES, 26):
        idx = order[start : start + 26]
        batches.append({k: v[idx][:, : int(lengths[idx].max())] for k, v in inputs.items()})
    return batches


def minilm(rows: list[dict]) -> None:
    model = zoo.load_model("minilm")
    data = minilm_data()
    per_pass = count_batches(data)
    method = WeightOnly(
        bits=4, group_size=32, skip=("pooler.*",)
    )  # the mean-pooled embedding never sees it
    res, seconds, calls = run_case(lambda: sensitivity(model, data, method, progress=False))
    once = seconds_stats([seconds])
    rows.append(
        {
            "case": "minilm",
            "what": f"sensitivity w4 ({MINILM_SENTENCES} sentences, one run)",
            "layers": len(res.rows),
            **once,
            "model_calls": calls,
            "passes": calls / per_pass,
        }
    )
    u4_size = memory_bytes(quantize(model, method))[0]
    plan, seconds, calls = run_case(
        lambda: search_plan(model, data, method=method, candidates=(8, 4, 2), target_size=u4_size)
    )
    rows.append(
        _plan_row(
            "minilm",
            "planner 8/4/2 at the size of uniform w4 (one run)",
            plan,
            seconds_stats([seconds]),
            calls,
            per_pass,
        )
    )


# --- output --------------------------------------------------------------------------------------


def markdown(out: dict) -> str:
    """The documentation's table of this run (what docs/analysis.md quotes)."""
    lines = [
        (
            f"Measured by `python benchmarks/analysis.py` ({out['threads']} thread(s), torch "
            f"{out['torch']}, {out['machine']}); written to `benchmarks/results/analysis.json`."
        ),
        "",
        "| case | what | layers | median s | p95 s | runs | model calls | passes over the data |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r['case']} | {r['what']} | {r['layers']} | {r['median_s']:.2f} | {r['p95_s']:.2f} "
            f"| {r['repeats']} | {r['model_calls']} | {r['passes']:.1f} |"
        )
    plans = [r for r in out["rows"] if "plan_drop" in r]
    if plans:
        lines += [
            "",
            "| case | plan at the size of uniform 4-bit | uniform 4-bit |",
            "|---|---|---|",
        ]
        for r in plans:
            lines.append(
                f"| {r['case']} | {r['plan_size_mb']:.4f} MB, drop {r['plan_drop']:.3f} | "
                f"{r['uniform_w4_size_mb']:.4f} MB, drop {r['uniform_w4_drop']:.3f} |"
            )
    return "\n".join(lines)


def update_doc(text: str) -> None:
    if not DOC.is_file():
        return
    doc = DOC.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(DOC_START) + ".*?" + re.escape(DOC_END), re.DOTALL)
    if pattern.search(doc):
        DOC.write_text(
            pattern.sub(lambda _: f"{DOC_START}\n{text}\n{DOC_END}", doc), encoding="utf-8"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs of each short case (default 5)"
    )
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    rows: list[dict] = []
    scaling(rows, args.repeats)
    digits(rows, args.repeats)
    if not args.skip_minilm:
        minilm(rows)
    out = {
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "repeats": args.repeats,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_results(RESULTS, out, indent=2)
    text = markdown(out)
    update_doc(text)
    print(text)
    print(f"wrote {RESULTS} and the table in {DOC}")


if __name__ == "__main__":
    main()
