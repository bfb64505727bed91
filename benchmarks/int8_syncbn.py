"""Static int8 latency of a SyncBatchNorm model vs its plain-BatchNorm twin, in one run.

Run: python benchmarks/int8_syncbn.py [--threads 1] [--repeats 50] [--passive-threads]
Writes benchmarks/results/int8_syncbn.json and prints a table.

A distributed training script calls ``nn.SyncBatchNorm.convert_sync_batchnorm(model)``;
the int8 model quantlens makes from it must be the one it makes from the single-process
twin: every SyncBatchNorm folded into the convolution before it, none left in float behind
its own DeQuant/Quant pair. Cases: the zoo's ``digits-cnn`` (6 BatchNorms, real digits,
batch 256) and ``resnet18`` (20 BatchNorms, random weights, synthetic 224x224, batch 1).
Variants per case: ``fp32`` and ``fp32-sync`` (eager float), ``int8`` and ``int8-sync``
(``ql.Static(backend="x86")``, the same calibration batches).

Every row: median and p95 over ``repeats`` timed calls after a warm-up, variants
interleaved call by call (so a busy machine slows them alike), ``threads`` intra-op
threads. ``vs_plain_int8`` is the row's median over the plain model's int8 median;
``float_batchnorms`` counts the BatchNorm modules left in float in the row's model.
"""

from __future__ import annotations

import argparse
import copy
import warnings
from pathlib import Path

from _threads import FLAG, HELP, set_wait_policy

set_wait_policy()  # before torch starts its thread pool

import torch
from _results import run_info, write_results
from _timing import interleaved
from torch import nn

import quantlens as ql
from quantlens import zoo

RESULTS = Path(__file__).resolve().parent / "results" / "int8_syncbn.json"
CASES = [("digits-cnn", 256), ("resnet18", 1)]


def data_for(name: str, batch: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Calibration batches and one timed input batch."""
    if name == "resnet18":
        calib = zoo.load_dataset("random-224", "calib").inputs
        return list(calib.split(4)), zoo.load_dataset("random-224", "test").inputs[:batch]
    calib = zoo.load_dataset("digits", "calib").inputs
    return list(calib.split(64)), zoo.load_dataset("digits", "test").inputs[:batch]


def float_batchnorms(model: nn.Module) -> int:
    """BatchNorm modules that are not int8 kernels (torch's quantized BatchNorm subclasses it)."""
    return sum(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        and not type(m).__module__.startswith("torch.ao.nn.quantized")
        for m in model.modules()
    )


def time_case(name: str, batch: int, *, warmup: int, repeats: int) -> list[dict]:
    model = zoo.load_model(name).eval()
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model)).eval()
    calib, x = data_for(name, batch)
    config = ql.Static(backend="x86")
    variants = {
        "fp32": model,
        "fp32-sync": sync,
        "int8": ql.quantize(model, config, calib_data=calib),
        "int8-sync": ql.quantize(sync, config, calib_data=calib),
    }
    with torch.no_grad():
        ref = model(x)
        cosine = {
            k: torch.nn.functional.cosine_similarity(m(x).flatten(), ref.flatten(), 0).item()
            for k, m in variants.items()
        }
    stats = interleaved(
        {k: (lambda m=m: m(x)) for k, m in variants.items()},
        warmup=warmup,
        budget_s=0.0,
        min_rounds=repeats,
        max_rounds=repeats,
    )
    base = stats["int8"]["median_ms"]
    return [
        {
            "model": name,
            "batch": batch,
            "variant": k,
            **t,
            "vs_plain_int8": t["median_ms"] / base,
            "float_batchnorms": float_batchnorms(variants[k]),
            "cosine_vs_fp32": cosine[k],
        }
        for k, t in stats.items()
    ]


def run(threads: int, repeats: int, warmup: int) -> dict:
    torch.set_num_threads(threads)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, batch in CASES:
            rows += time_case(name, batch, warmup=warmup, repeats=repeats)
    return {
        **run_info("int8_syncbn", threads),
        "rows": rows,
    }


def table(result: dict) -> str:
    header = (
        f"{'model':<11}{'batch':>6}  {'variant':<10}{'median ms':>10}{'p95 ms':>9}"
        f"{'vs int8':>9}{'float BN':>9}{'cosine':>9}"
    )
    lines = [header]
    for r in result["rows"]:
        lines.append(
            f"{r['model']:<11}{r['batch']:>6}  {r['variant']:<10}{r['median_ms']:>10.2f}"
            f"{r['p95_ms']:>9.2f}{r['vs_plain_int8']:>8.2f}x{r['float_batchnorms']:>9}"
            f"{r['cosine_vs_fp32']:>9.4f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(FLAG, action="store_true", help=HELP)
    args = parser.parse_args()
    result = run(args.threads, args.repeats, args.warmup)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_results(RESULTS, result)
    print(table(result))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
