"""Dynamic int8 recurrent models in one run: fp32 vs quantlens vs torch.ao, idle and with a busy
core.

Run: python benchmarks/int8_rnn.py [--threads 2] [--budget 2] [--passive-threads]
Writes benchmarks/results/int8_rnn.json and prints a table.

Models: the zoo ``digits-lstm`` and ``digits-gru`` (hidden 64, trained on scikit-learn
digits, 8 steps of 8 features), and ``wide-lstm`` / ``wide-gru`` (the same shape with
hidden 384, seeded random weights: timing and cosine only) to show where int8 pays.

Variants, on the same inputs:

- ``fp32``: the float model;
- ``ql-dynamic``: ``ql.Dynamic()`` with its defaults; ``rnn_path`` says whether it made the
  recurrent layer int8 or left it float (and the summary's reason). Where Dynamic leaves every
  layer float (it raises ``NothingToQuantizeError``: int8 would be slower), the user keeps
  the float model, so this row times the float model again (``kept_float``);
- ``ql-int8-rnn``: ``ql.Dynamic(min_rnn_hidden=0)``: the recurrent layer int8 whatever its size
  (a head with fewer than 64 outputs stays float, ``Dynamic.min_linear_out``);
- ``ao-per-channel``: ``torch.ao.quantization.quantize_dynamic`` (LSTM/GRU + Linear,
  per-channel int8 weights): PyTorch's own dynamic RNN.

Latency at batch 1 and 450 (the digits test split), idle and under ``load="busy-core"``
(a child process spinning on one core for the whole case). Calls are interleaved (one timed
call of each variant per round, ``_timing.interleaved``) after a warm-up; median and p95;
``speedup`` is fp32 time over the row's time in the same case. Quality: logit cosine vs
fp32 over the test split, and test accuracy for the trained models.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from pathlib import Path

from _threads import FLAG, HELP, set_wait_policy

set_wait_policy()

import torch
import torch.nn.functional as F
from _load import LOADS, busy_core
from _results import run_info, write_results
from _timing import interleaved

import quantlens as ql
from quantlens import zoo
from quantlens.errors import NothingToQuantizeError
from quantlens.zoo.models import DigitsRNN

RESULTS = Path(__file__).resolve().parent / "results" / "int8_rnn.json"
BATCHES = (1, 450)


def models() -> dict[str, tuple[torch.nn.Module, bool]]:
    """name -> (float model, trained on digits)."""
    out = {name: (zoo.load_model(name), True) for name in ("digits-lstm", "digits-gru")}
    for cell in ("lstm", "gru"):
        torch.manual_seed(0)
        out[f"wide-{cell}"] = (DigitsRNN(cell, hidden=384).eval(), False)
    return out


def ql_dynamic(model: torch.nn.Module) -> tuple[torch.nn.Module, str | None]:
    """``ql.Dynamic()``'s model and None, or the float model and the error's reason where
    Dynamic leaves every layer float."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ql.quantize(model, ql.Dynamic()), None
    except NothingToQuantizeError as exc:
        return model, str(exc)


def variants(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "fp32": model,
            "ql-dynamic": ql_dynamic(model)[0],
            "ql-int8-rnn": ql.quantize(model, ql.Dynamic(min_rnn_hidden=0)),
            "ao-per-channel": quantize_dynamic(
                copy.deepcopy(model),
                {
                    torch.nn.LSTM: per_channel_dynamic_qconfig,
                    torch.nn.GRU: per_channel_dynamic_qconfig,
                    torch.nn.Linear: per_channel_dynamic_qconfig,
                },
                dtype=torch.qint8,
            ),
        }


def rnn_path(qm: torch.nn.Module, kept_float: str | None = None) -> str:
    """``int8`` or ``float (reason)``: what quantlens did with the recurrent layer."""
    if kept_float is not None:
        return f"float ({kept_float.split('(', 1)[1].split(';')[0]})"
    summary = getattr(qm, "quantlens_summary", None)
    record = next((r for r in summary.records if r.name == "rnn"), None) if summary else None
    if record is None:
        return ""
    return "int8" if record.action == "quantized" else f"float ({record.reason.split(';')[0]})"


def model_rows(
    name: str, model: torch.nn.Module, trained: bool, budget: float, warmup: int
) -> list[dict]:
    test = zoo.load_dataset("digits-seq", "test")
    vs, kept_float = variants(model), ql_dynamic(model)[1]
    with torch.inference_mode():
        logits = {label: m(test.inputs) for label, m in vs.items()}
    rows = []
    for load in LOADS:
        with busy_core(load == "busy-core"):
            for batch in BATCHES:
                x = test.inputs[:batch]
                stats = interleaved(
                    {label: (lambda m=m, x=x: m(x)) for label, m in vs.items()},
                    warmup=warmup,
                    budget_s=budget,
                )
                base = stats["fp32"]["median_ms"]
                for label, s in stats.items():
                    row = {
                        "model": name,
                        "load": load,
                        "batch": batch,
                        "variant": label,
                        **s,
                        "speedup": base / s["median_ms"],
                        "logit_cosine": F.cosine_similarity(logits["fp32"], logits[label], dim=-1)
                        .mean()
                        .item(),
                    }
                    if trained:
                        row["accuracy"] = (
                            (logits[label].argmax(1) == test.labels).float().mean().item()
                        )
                    if label.startswith("ql-"):
                        kept = kept_float if label == "ql-dynamic" else None
                        row["rnn_path"] = rnn_path(vs[label], kept)
                        row["kept_float"] = kept is not None
                    rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'model':12} {'load':9} {'batch':>5} {'variant':15} {'median ms':>10} "
        f"{'p95 ms':>8} {'speedup':>8} {'cosine':>8}  rnn"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['model']:12} {r['load']:9} {r['batch']:5} {r['variant']:15} "
            f"{r['median_ms']:10.3f} {r['p95_ms']:8.3f} {r['speedup']:7.2f}x "
            f"{r['logit_cosine']:8.5f}  {r.get('rnn_path', '')[:40]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(FLAG, action="store_true", help=HELP)
    parser.add_argument(
        "--budget", type=float, default=2.0, help="seconds of timed rounds per case"
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    info = run_info("int8_rnn", args.threads)
    rows, notes = [], {}
    for name, (model, trained) in models().items():
        rows += model_rows(name, model, trained, args.budget, args.warmup)
        qm, kept_float = ql_dynamic(model)
        notes[name] = kept_float or " | ".join(qm.quantlens_summary.notes)
    ql_rows = [r for r in rows if r["variant"] == "ql-dynamic"]
    result = {
        **info,
        "quantized_engine": torch.backends.quantized.engine,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "slowest_ql_dynamic_speedup": min(r["speedup"] for r in ql_rows),
        "ql_dynamic_summary_notes": {k: v for k, v in notes.items() if v},
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result)
    print_table(rows)
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
