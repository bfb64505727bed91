"""Dynamic int8 convolutions: is quantizing Conv2d on the fly worth it, in one run.

Run: python benchmarks/dynamic_conv.py [--threads 1] [--budget 2] [--passive-threads]
Writes benchmarks/results/dynamic_conv.json and prints a table.

Models (random weights, eval mode; timing and output cosine only): the classic CNNs of
``quantlens.zoo.classic`` at their 3x32x32 input (SqueezeNet has no Linear layer, so
``ql.Dynamic()`` quantizes its convolutions by default; the others end in a Linear head),
and ``resnet18`` from the zoo at 3x64x64.

Variants, on the same inputs:

- ``fp32``: the float model;
- ``dynamic``: ``ql.Dynamic()`` with its defaults (Linear only, or Conv2d in a conv-only
  model);
- ``dynamic+conv``: ``ql.Dynamic(modules=("linear", "conv2d"))``: every Conv2d int8 too;
- ``static``: ``ql.Static()`` calibrated on 4 batches of the same distribution (the int8
  path with calibration, for scale).

Latency at batch 1 and 16, calls interleaved after a warm-up (``_timing.interleaved``);
median and p95; ``speedup`` is fp32 time over the row's time in the same case. Quality:
cosine of the output with fp32 on the timed batch.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from _threads import FLAG, HELP, set_wait_policy

set_wait_policy()

import torch
import torch.nn.functional as F
from _results import run_info, write_results
from _timing import interleaved

import quantlens as ql
from quantlens import zoo
from quantlens.zoo import classic

RESULTS = Path(__file__).resolve().parent / "results" / "dynamic_conv.json"
BATCHES = (1, 16)
MODELS = ("squeezenet", "mobilenet-v2", "densenet", "resnet18")


def build(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The float model and its input shape (without the batch)."""
    torch.manual_seed(0)
    if name in classic.MODELS:
        return classic.build(name).eval(), tuple(classic.INPUT_SHAPE)
    return zoo.load_model(name, pretrained=False).eval(), (3, 64, 64)


def variants(model: torch.nn.Module, shape: tuple[int, ...]) -> dict[str, torch.nn.Module]:
    g = torch.Generator().manual_seed(1)
    calib = [torch.randn(8, *shape, generator=g) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "fp32": model,
            "dynamic": ql.quantize(model, ql.Dynamic()),
            "dynamic+conv": ql.quantize(model, ql.Dynamic(modules=("linear", "conv2d"))),
            "static": ql.quantize(model, ql.Static(), calib_data=calib),
        }


def model_rows(name: str, budget: float, warmup: int) -> list[dict]:
    model, shape = build(name)
    made = variants(model, shape)
    rows = []
    for batch in BATCHES:
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            ref = model(x).flatten()
            cosines = {
                k: F.cosine_similarity(m(x).flatten(), ref, dim=0).item() for k, m in made.items()
            }
        timed = interleaved(
            {k: (lambda m=m, x=x: m(x)) for k, m in made.items()}, warmup=warmup, budget_s=budget
        )
        base = timed["fp32"]["median_ms"]
        for variant, stats in timed.items():
            summary = getattr(made[variant], "quantlens_summary", None)
            rows.append(
                {
                    "model": name,
                    "batch": batch,
                    "variant": variant,
                    **stats,
                    "speedup": base / stats["median_ms"],
                    "cosine": cosines[variant],
                    "int8_layers": len(summary.quantized) if summary else 0,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timing per case")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(FLAG, action="store_true", help=HELP)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = [
        r for name in args.models.split(",") for r in model_rows(name, args.budget, args.warmup)
    ]
    with_linear = [r for r in rows if r["variant"] == "dynamic+conv" and r["model"] != "squeezenet"]
    default = {(r["model"], r["batch"]): r for r in rows if r["variant"] == "dynamic"}
    result = {
        **run_info("dynamic_conv", args.threads),
        "quantized_engine": torch.backends.quantized.engine,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "conv_vs_default_speedup_min": min(
            default[(r["model"], r["batch"])]["median_ms"] / r["median_ms"] for r in with_linear
        )
        if with_linear
        else None,
        "seconds": time.perf_counter() - start,
        "rows": rows,
    }
    write_results(RESULTS, result)
    print(
        f"{'model':14} {'batch':>5} {'variant':13} {'median ms':>10} {'speedup':>8} {'cosine':>8}"
    )
    for r in rows:
        print(
            f"{r['model']:14} {r['batch']:>5} {r['variant']:13} {r['median_ms']:>10.3f} "
            f"{r['speedup']:>8.2f} {r['cosine']:>8.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
