"""Time of the analysis tools: a full sensitivity pass and the mixed-precision planner on
digits-cnn and MiniLM, and how a sensitivity pass scales with the number of layers when
the float outputs are cached (the float model runs once) vs rerun for every layer.

Run: python benchmarks/analysis.py [--threads 1] [--skip-minilm]
Writes benchmarks/results/analysis.json and prints a table. Times are wall-clock seconds of
one run (these passes take seconds to minutes; repeating them would not fit a shared
machine's budget); ``forward passes`` counts model runs over the data, which is what the
time is made of. ``x cached`` is the naive pass's time over the cached one in the same
process.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from quantlens import quantize, zoo
from quantlens.analysis import search_plan, sensitivity
from quantlens.analysis.scoring import Evaluator
from quantlens.analysis.sensitivity import Variants
from quantlens.eval.presets import make_config
from quantlens.eval.quality import collect_outputs
from quantlens.eval.size import memory_bytes
from quantlens.methods import WeightOnly

RESULTS = Path(__file__).resolve().parent / "results" / "analysis.json"
DEPTHS = (4, 8, 16, 32)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


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


def scaling(rows: list[dict]) -> None:
    config = make_config("w4")
    x = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    for depth in DEPTHS:
        model = mlp(depth)
        start = time.perf_counter()
        ev = Evaluator(model, x, metric="sqnr")
        res = sensitivity(model, x, config, evaluator=ev, progress=False)
        t_cached = time.perf_counter() - start
        start = time.perf_counter()
        naive_sensitivity(model, x, config)
        t_naive = time.perf_counter() - start
        n = len(res.rows)
        rows.append({"case": f"mlp depth {depth}", "what": "sensitivity w4 (cached float)", "layers": n,
                     "seconds": t_cached, "forward_passes": ev.runs})
        rows.append({"case": f"mlp depth {depth}", "what": "sensitivity w4 (float rerun per layer)", "layers": n,
                     "seconds": t_naive, "forward_passes": 2 * n, "x_cached": t_naive / t_cached})


def digits(rows: list[dict]) -> None:
    model = zoo.load_model("digits-cnn")
    test = zoo.load_dataset("digits", "test")
    data = (test.inputs, test.labels)  # 450 images
    method = WeightOnly(bits=4, group_size=None, modules=("linear", "conv2d"))
    res, t = timed(lambda: sensitivity(model, data, method, progress=False))
    rows.append({"case": "digits-cnn", "what": "sensitivity w4 per-channel (6 Conv2d + Linear)",
                 "layers": len(res.rows), "seconds": t, "forward_passes": len(res.rows) + 2})
    u4_size = memory_bytes(quantize(model, method))[0]
    plan, t = timed(lambda: search_plan(model, data, method=method, candidates=(8, 4, 2), target_size=u4_size))
    u4 = next(u for u in plan.uniform if u.bits == 4)
    rows.append({"case": "digits-cnn", "what": "planner 8/4/2 at the size of uniform w4", "layers": len(plan.layers),
                 "seconds": t, "plan_drop": plan.measured_drop, "plan_size_mb": plan.size_bytes / 1e6,
                 "uniform_w4_drop": u4.drop, "uniform_w4_size_mb": u4.size_bytes / 1e6, "bits": plan.bits})


def minilm(rows: list[dict]) -> None:
    model = zoo.load_model("minilm")
    data = zoo.load_dataset("sentences", "test").batches(16)[:1]  # 16 sentences x 24 tokens
    res, t = timed(lambda: sensitivity(model, data, make_config("w4"), progress=False))
    rows.append({"case": "minilm", "what": "sensitivity w4 (16 sentences)", "layers": len(res.rows), "seconds": t,
                 "forward_passes": len(res.rows) + 2})
    u4_size = memory_bytes(quantize(model, make_config("w4")))[0]
    plan, t = timed(lambda: search_plan(model, data, candidates=(8, 4, 2), target_size=u4_size))
    u4 = next(u for u in plan.uniform if u.bits == 4)
    rows.append({"case": "minilm", "what": "planner 8/4/2 at the size of uniform w4", "layers": len(plan.layers),
                 "seconds": t, "plan_drop": plan.measured_drop, "plan_size_mb": plan.size_bytes / 1e6,
                 "uniform_w4_drop": u4.drop, "uniform_w4_size_mb": u4.size_bytes / 1e6,
                 "bits": plan.bits})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    rows: list[dict] = []
    scaling(rows)
    digits(rows)
    if not args.skip_minilm:
        minilm(rows)
    out = {"threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
           "processor": platform.processor(), "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"{'case':<14} {'what':<46} {'layers':>6} {'seconds':>8} {'passes':>7} {'x cached':>8}")
    for r in rows:
        x = f"{r['x_cached']:.2f}" if "x_cached" in r else ""
        print(f"{r['case']:<14} {r['what']:<46} {r['layers']:>6} {r['seconds']:>8.2f} "
              f"{r.get('forward_passes', ''):>7} {x:>8}")
    for r in rows:
        if "plan_drop" in r:
            print(f"{r['case']}: plan {r['plan_size_mb']:.4f} MB, drop {r['plan_drop']:.3f}; uniform w4 "
                  f"{r['uniform_w4_size_mb']:.4f} MB, drop {r['uniform_w4_drop']:.3f} (drop: accuracy points "
                  "on digits, embedding-cosine points on MiniLM)")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
