"""Throughput of the core primitives: quantize / dequantize per granularity, pack / unpack.

Run: python benchmarks/core.py [--size 4096] [--repeats 7] [--threads 2]
Writes benchmarks/results/core.json and prints a table. Every row reports the median and
p95 of ``repeats`` timed runs after a warm-up, and GB/s of float32 input (quantize,
dequantize) or of unpacked codes (pack, unpack). ``x round`` is the row's median time over
the median of a ``torch.round`` pass over the same float32 matrix, timed alternately with
it in the same repeats.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time
from pathlib import Path

import torch
from _results import write_results

from quantlens.core import QScheme, pack, quantize_tensor, unpack

RESULTS = Path(__file__).resolve().parent / "results" / "core.json"

GRANULARITIES = {
    "per_tensor": {},
    "per_channel": {"granularity": "per_channel", "axis": 0},
    "per_group_128": {"granularity": "per_group", "group_size": 128},
    "per_group_64": {"granularity": "per_group", "group_size": 64},
}


def _stats(times: list[float]) -> dict:
    times = sorted(times)
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return {
        "median_s": statistics.median(times),
        "p95_s": p95,
        "min_s": times[0],
        "repeats": len(times),
    }


def timeit(fn, *, warmup: int, repeats: int, baseline=None) -> dict:
    """Median / p95 of ``fn``; with ``baseline``, each repeat also times it right before
    ``fn``, and ``vs_round`` is the ratio of the two medians (robust to load that drifts
    during the run, as on a shared machine)."""
    for _ in range(warmup):
        fn()
    times, base_times = [], []
    for _ in range(repeats):
        if baseline is not None:
            start = time.perf_counter()
            baseline()
            base_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    out = _stats(times)
    if baseline is not None:
        out["vs_round"] = out["median_s"] / statistics.median(base_times)
        out["vs_round_best"] = out["min_s"] / min(base_times)  # least disturbed by other load
    return out


def row(name: str, op: str, timing: dict, nbytes: int) -> dict:
    return {"name": name, "op": op, **timing, "gb_per_s": nbytes / timing["median_s"] / 1e9}


def run(size: int, repeats: int, warmup: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(size, size)
    nbytes = x.numel() * x.element_size()

    def baseline():
        return torch.round(x)

    rows = [
        row(
            "torch.round (baseline)",
            "round",
            timeit(baseline, warmup=warmup, repeats=repeats),
            nbytes,
        )
    ]
    for bits in (8, 4):
        for gname, kw in GRANULARITIES.items():
            scheme = QScheme(bits=bits, symmetric=False, **kw)
            label = f"int{bits} asym {gname}"
            quant = functools.partial(quantize_tensor, x, scheme)
            rows.append(
                row(
                    label,
                    "quantize",
                    timeit(quant, warmup=warmup, repeats=repeats, baseline=baseline),
                    nbytes,
                )
            )
            deq = quant().dequantize
            rows.append(
                row(
                    label,
                    "dequantize",
                    timeit(deq, warmup=warmup, repeats=repeats, baseline=baseline),
                    nbytes,
                )
            )
    for bits, numel in ((2, 64 * 2**20), (4, size * size), (3, size * size)):
        codes = torch.randint(0, 1 << bits, (numel,), dtype=torch.uint8)
        label = f"{numel / 2**20:.0f}M {bits}-bit codes"
        rows.append(
            row(
                label,
                "pack",
                timeit(functools.partial(pack, codes, bits), warmup=warmup, repeats=repeats),
                numel,
            )
        )
        packed = pack(codes, bits)
        unpack_fn = functools.partial(unpack, packed, bits, codes.shape)
        rows.append(row(label, "unpack", timeit(unpack_fn, warmup=warmup, repeats=repeats), numel))
    group4 = next(
        r for r in rows if r["name"] == "int4 asym per_group_128" and r["op"] == "quantize"
    )
    return {
        "benchmark": "core",
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": threads,
        "matrix": [size, size],
        "rows": rows,
        "per_group_4bit_quantize_vs_round": group4["vs_round"],
        "per_group_4bit_quantize_vs_round_best": group4["vs_round_best"],
    }


def print_table(result: dict) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        Console = None
    headers = ["case", "op", "median ms", "p95 ms", "min ms", "GB/s", "x round", "x round (best)"]
    lines = [
        [
            r["name"],
            r["op"],
            f"{r['median_s'] * 1e3:.1f}",
            f"{r['p95_s'] * 1e3:.1f}",
            f"{r['min_s'] * 1e3:.1f}",
            f"{r['gb_per_s']:.2f}",
            f"{r['vs_round']:.2f}" if "vs_round" in r else "",
            f"{r['vs_round_best']:.2f}" if "vs_round_best" in r else "",
        ]
        for r in result["rows"]
    ]
    title = (
        f"core, {result['matrix'][0]}x{result['matrix'][1]} fp32, {result['threads']} threads, "
        f"torch {result['torch']}"
    )
    if Console is None:
        print(title)
        for line in [headers, *lines]:
            print("  ".join(f"{c:>24}" if i == 0 else f"{c:>10}" for i, c in enumerate(line)))
    else:
        table = Table(title=title)
        for h in headers:
            table.add_column(h, justify="left" if h in ("case", "op") else "right")
        for line in lines:
            table.add_row(*line)
        Console(width=max(Console().width, 110)).print(table)
    print(
        "per-group(128) 4-bit quantize / torch.round: "
        f"{result['per_group_4bit_quantize_vs_round']:.2f}x (medians), "
        f"{result['per_group_4bit_quantize_vs_round_best']:.2f}x (best runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.size, args.repeats, args.warmup, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result, indent=2)
    print_table(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
