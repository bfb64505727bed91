"""Weight-only quantization of a whole model: MiniLM, quantlens vs torchao vs optimum-quanto.

Run: python benchmarks/weight_only_model.py [--threads 2] [--budget 15] [--no-peers]
Writes benchmarks/results/weight_only_model.json and prints a table.

Model: all-MiniLM-L6-v2 (real pretrained weights, zoo ``minilm``), Linear layers quantized
(embeddings stay float here so every variant quantizes the same layers).

Variants:

- ``fp32``: the float model;
- ``ql-int8``: ``WeightOnly(bits=8, group_size=None)`` (per-channel, symmetric);
- ``ql-int4-g128``: ``WeightOnly(bits=4, group_size=128)`` (round to nearest);
- ``ql-int4-g64`` / ``-hqq`` / ``-gptq``: group 64 with round to nearest / HQQ / GPTQ (GPTQ:
  32 calibration sentences, unpadded, disjoint from the evaluation set);
- ``ql-2bit-g64`` / ``-hqq``: 2 bits, group 64, round to nearest / HQQ;
- peers, where they install: torchao ``quantize_`` with ``Int8WeightOnlyConfig`` and the CPU
  int4 prototype ``PrototypeInt4WeightOnlyConfig`` (group 128; needs a bfloat16 model), and
  optimum-quanto ``quantize(weights=qint8 / qint4)`` + ``freeze``.

Quality: mean cosine of mean-pooled embeddings vs fp32 over the zoo ``sentences`` set
(252 sentences) and retrieval agreement (same nearest neighbour). Latency: batch 1 x seq 32
and batch 8 x seq 128 of real text; calls interleaved round-robin (a busy machine slows all
alike), median and p95, ``ratio`` = variant time / fp32 time. ``quant_s``: seconds to
quantize the whole model.
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings
from pathlib import Path

from _threads import FLAG, HELP, set_wait_policy

set_wait_policy()  # before torch starts its thread pool

import torch
from _peers import quanto_weight_only, timed, torchao_weight_only
from _results import write_results
from _timing import interleaved

import quantlens as ql
from quantlens import zoo
from quantlens.methods.weight_only import WeightOnly
from quantlens.zoo import minilm, sentences

RESULTS = Path(__file__).parent / "results" / "weight_only_model.json"
SHAPES = ((1, 32), (8, 128))

CONFIGS = {
    "ql-int8": WeightOnly(bits=8, group_size=None),
    "ql-int4-g128": WeightOnly(bits=4, group_size=128),
    "ql-int4-g64": WeightOnly(bits=4, group_size=64),
    "ql-int4-g64-hqq": WeightOnly(bits=4, group_size=64, algorithm="hqq"),
    "ql-int4-g64-gptq": WeightOnly(bits=4, group_size=64, algorithm="gptq"),
    "ql-2bit-g64": WeightOnly(bits=2, group_size=64),
    "ql-2bit-g64-hqq": WeightOnly(bits=2, group_size=64, algorithm="hqq"),
}


def text_batch(batch: int, seq: int) -> dict[str, torch.Tensor]:
    """Real sentences joined so every row fills ``seq`` tokens."""
    texts = sentences.all_sentences()
    per_row = max(1, seq // 10)
    rows = [
        " ".join(texts[(i * per_row + j) % len(texts)] for j in range(per_row + 4))
        for i in range(batch)
    ]
    return minilm.tokenize(rows, max_length=seq)


def calibration() -> list[dict]:
    tok = minilm.tokenizer()
    return [dict(tok(s, return_tensors="pt")) for s in sentences.calibration_sentences()]


# --- main ----------------------------------------------------------------------------------------


@torch.no_grad()  # not inference_mode: optimum-quanto's int4 weights fail under it
def embeddings(model, batches) -> torch.Tensor:
    out = []
    for batch in batches:
        hidden = model(**batch).last_hidden_state.float()
        out.append(minilm.mean_pool(hidden, batch["attention_mask"]))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(FLAG, action="store_true", help=HELP)
    parser.add_argument("--budget", type=float, default=15.0, help="seconds of timing per shape")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    model = zoo.load_model("minilm")
    eval_batches = zoo.load_dataset("sentences").batches(64)
    reference = minilm.mean_pooled_embeddings(model, eval_batches)
    variants = {"fp32": (model, 0.0, torch.float32)}
    calib = calibration()
    for label, cfg in CONFIGS.items():
        qm, secs = timed(
            lambda cfg=cfg: ql.quantize(
                model, cfg, calib_data=calib if cfg.algorithm == "gptq" else None
            )
        )
        variants[label] = (qm, secs, torch.float32)
    status = {}
    if not args.no_peers:

        def smoke(m):  # a first call: a peer that cannot run MiniLM counts as failed
            return m(**text_batch(1, 32))

        for make, int8, int4, check in (
            (torchao_weight_only, "ao-int8wo", "ao-int4-proto-g128", smoke),
            (quanto_weight_only, "quanto-int8", "quanto-int4", None),
        ):
            found, st = make(model, int8, int4, check)
            variants.update(found)
            status.update(st)

    failed: list[str] = []
    rows = {
        label: {"variant": label, "quant_s": round(secs, 3)}
        for label, (m, secs, _) in variants.items()
    }
    for label, (m, _, _) in list(variants.items()):
        try:
            emb = embeddings(m, eval_batches)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run this model
            status[label] = f"failed to run: {type(exc).__name__}: {str(exc)[:200]}"
            failed.append(label)
            continue
        rows[label]["cosine"] = minilm.mean_cosine(reference, emb)
        rows[label]["retrieval_agreement"] = minilm.retrieval_agreement(reference, emb)
        print(f"quality {label}: cosine {rows[label]['cosine']:.5f}", flush=True)
    for label in failed:
        del variants[label], rows[label]
    for batch, seq in SHAPES:
        inputs = text_batch(batch, seq)
        calls = {
            label: (lambda m=m, inputs=inputs: m(**inputs)) for label, (m, _, _) in variants.items()
        }
        stats = interleaved(calls, warmup=args.warmup, budget_s=args.budget)
        base = stats["fp32"]["median_ms"]
        for label, st in stats.items():
            key = f"b{batch}_s{seq}"
            rows[label][key] = {
                **{k: round(v, 3) for k, v in st.items()},
                "ratio": round(st["median_ms"] / base, 3),
            }
        print(f"timed batch {batch} x seq {seq}", flush=True)

    result = {
        "benchmark": "weight_only_model",
        "model": "all-MiniLM-L6-v2 (Linear layers quantized)",
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (spin, then sleep)"),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "peers": status,
        "rows": list(rows.values()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_results(RESULTS, result)
    header = f"{'variant':22} {'quant s':>8} {'cosine':>8} {'retr':>6}"
    for batch, seq in SHAPES:
        header += f" {f'b{batch}/s{seq} med ms':>15} {'p95':>8} {'ratio':>6}"
    print(header)
    for r in rows.values():
        line = (
            f"{r['variant']:22} {r['quant_s']:8.2f} {r['cosine']:8.5f} "
            f"{r['retrieval_agreement']:6.3f}"
        )
        for batch, seq in SHAPES:
            st = r[f"b{batch}_s{seq}"]
            line += f" {st['median_ms']:15.2f} {st['p95_ms']:8.2f} {st['ratio']:6.2f}"
        print(line)
    for name, st in status.items():
        print(f"peer {name}: {st}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
