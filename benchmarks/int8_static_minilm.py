"""Static int8 on the real all-MiniLM-L6-v2 fed tokenized dict batches: embedding quality,
how many Linear layers run int8, and how long quantizing (capture, calibration, the auto
observer's measurements, conversion) takes, per activation observer.

Run: python benchmarks/int8_static_minilm.py [--threads 1] [--observers histogram,entropy,auto]
Writes benchmarks/results/int8_static_minilm.json and prints a table.

Calibration: the zoo's calibration sentences (never evaluated on), in batches of 8, padded to
``minilm.MAX_LENGTH``. Evaluation: every zoo ``sentences`` sentence; ``cosine`` is the mean
cosine similarity of mean-pooled embeddings against the float model, ``agreement`` the
fraction of sentences whose nearest neighbour is unchanged. ``quantize_s`` is one wall-clock
run of ``ql.quantize`` (not a median: quantizing is a one-off cost), so a busy machine shows
in it; the load average is recorded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _results import run_info, write_results

import quantlens as ql
from quantlens.zoo import load_dataset, load_model, minilm, sentences

RESULTS = Path(__file__).resolve().parent / "results" / "int8_static_minilm.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--observers", default="histogram,entropy,auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = run_info("int8_static_minilm", args.threads)  # the load average before the run
    model = load_model("minilm")
    texts = sentences.calibration_sentences()
    calib = [minilm.tokenize(texts[i : i + 8]) for i in range(0, len(texts), 8)]
    test = load_dataset("sentences").batches(64)
    reference = minilm.mean_pooled_embeddings(model, test)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    rows = []
    for observer in args.observers.split(","):
        start = time.perf_counter()
        qm = ql.quantize(model, ql.Static(observer=observer), calib_data=calib)
        seconds = time.perf_counter() - start
        emb = minilm.mean_pooled_embeddings(qm, test)
        summary = qm.quantlens_summary
        rows.append(
            {
                "observer": observer,
                "cosine": minilm.mean_cosine(reference, emb),
                "agreement": minilm.retrieval_agreement(reference, emb),
                "linear_int8": sum(r.kind == "Linear" for r in summary.quantized),
                "linear_total": n_linear,
                "quantize_s": seconds,
                "choices": next(
                    (n for n in summary.notes if n.startswith("observer='auto'")), None
                ),
            }
        )
    write_results(
        RESULTS,
        {
            **info,
            "calibration_sentences": len(texts),
            "eval_sentences": len(reference),
            "rows": rows,
        },
    )
    print(f"{'observer':<10} {'cosine':>7} {'agree':>6} {'Linear int8':>12} {'quantize s':>11}")
    for r in rows:
        print(
            f"{r['observer']:<10} {r['cosine']:7.4f} {r['agreement']:6.3f} "
            f"{r['linear_int8']:>5}/{r['linear_total']:<6} {r['quantize_s']:11.1f}"
        )


if __name__ == "__main__":
    main()
