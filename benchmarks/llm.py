"""SmolLM2-135M on Hamlet: perplexity, checkpoint size and generation speed per method.

The model is the ``smollm2`` zoo model (SmolLM2-135M-Instruct read from its Q4_1 GGUF file):
its weights were published on a 4-bit grid, so **the float reference is the dequantized Q4_1
model**. Perplexity is measured on the first ``--tokens`` tokens of Hamlet in disjoint windows
of ``--window`` tokens; calibration (GPTQ) uses other plays (Macbeth, The Tempest, Othello).

Variants: float32; quantlens weight-only w8 g128, w4 g128 RTN / HQQ / GPTQ (act-order on and
off; true-sequential with ``--true-seq``) / AWQ / AWQ+GPTQ, w3 g128 GPTQ / AWQ, w2 g64 RTN (the
Linear layers of the decoder; the output head tied to the input embedding stays float, the
default for causal LMs, and one row, ``+lm_head``, quantizes it too); W8A8 (``ql.Dynamic``:
int8 weights, per-token int8 activations) without and with SmoothQuant (alpha searched); and,
side by side in the same process, the peers that install here: torchao int8 and int4
weight-only (int4 on a bfloat16 copy: its CPU kernel takes bfloat16) and optimum-quanto int8 /
int4 (these quantize every Linear, the head included).

Generation is greedy at batch 1 with the KV cache (``quantlens.eval.measure_generation``):
a ``--prompt``-token prompt of Hamlet, then ``--new-tokens`` decode steps. The variants are
timed round-robin (one generation each per round, ``--rounds`` rounds after a warm-up round),
so a noisy neighbour slows them alike; medians and p95 over the rounds. Decode at batch 1
reads every weight once per token: each row records those bytes (the weights of every layer
but the embedding lookups) and the rate they were read at, against the machine's read
bandwidth measured in the same run (the median of timed sums over a 512 MB tensor).

    python benchmarks/llm.py --threads 2 --calib-samples 8 --rounds 3   # ~30 min on 2 cores

It writes benchmarks/results/llm.json, then docs/llm.md (``benchmarks/llm_page.py``).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

from _threads import FLAG, HELP, set_wait_policy

set_wait_policy()  # before torch starts its thread pool

import llm_page
import torch
from _peers import quanto_weight_only, timed, torchao_weight_only
from _results import run_info, write_results

import quantlens as ql
from quantlens import zoo
from quantlens.eval.generation import measure_generation
from quantlens.eval.latency import percentile
from quantlens.eval.perplexity import measure_perplexity
from quantlens.eval.size import checkpoint_bytes
from quantlens.nn import QEmbedding
from quantlens.zoo import shakespeare, smollm2

RESULTS = Path(__file__).resolve().parent / "results" / "llm.json"
W = ql.WeightOnly
CONFIGS = {
    "w8 g128": W(bits=8, group_size=128),
    "w4 g128 rtn": W(bits=4, group_size=128),
    "w4 g128 hqq": W(bits=4, group_size=128, algorithm="hqq"),
    "w4 g128 gptq": W(bits=4, group_size=128, algorithm="gptq"),
    "w4 g128 gptq no-act-order": W(bits=4, group_size=128, algorithm="gptq", act_order=False),
    "w4 g128 awq": W(bits=4, group_size=128, algorithm="awq"),
    "w4 g128 awq+gptq": W(bits=4, group_size=128, algorithm="awq+gptq"),
    "w4 g128 rtn +lm_head": W(bits=4, group_size=128, lm_head=True),
    "w3 g128 hqq": W(bits=3, group_size=128, algorithm="hqq"),
    "w3 g128 gptq": W(bits=3, group_size=128, algorithm="gptq"),
    "w3 g128 awq": W(bits=3, group_size=128, algorithm="awq"),
    "w2 g64 rtn": W(bits=2, group_size=64),
    "w8a8 dynamic": ql.Dynamic(),
    "w8a8 dynamic smoothquant": ql.Dynamic(smoothquant="auto"),
}
TRUE_SEQUENTIAL = {  # --true-seq: block-by-block calibration costs several more model passes
    "w4 g128 gptq true-seq": W(bits=4, group_size=128, algorithm="gptq", true_sequential=True),
    "w3 g128 gptq true-seq": W(bits=3, group_size=128, algorithm="gptq", true_sequential=True),
}


def read_bandwidth(mbytes: int = 512, reps: int = 7) -> float:
    """The machine's read bandwidth in GB/s: the median time of ``sum()`` over a float32
    tensor far larger than the caches (a pure streaming read on the benchmark's threads)."""
    x = torch.ones(mbytes * 2**20 // 4)
    x.sum()  # touch every page
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - start)
    return x.numel() * 4 / statistics.median(times) / 1e9


def weight_bytes_per_token(model) -> int:
    """Bytes a batch-1 decode step reads from the model's own tensors: every parameter and
    buffer (packed codes, scales, zero-points) of every layer except the embedding lookups,
    which read one row; a tensor shared by two layers (a tied head) counts once."""
    seen, total = set(), 0
    for module in model.modules():
        if isinstance(module, (torch.nn.Embedding, QEmbedding)):
            continue
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        for t in tensors:
            key = (t.data_ptr(), t.numel())
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(FLAG, action="store_true", help=HELP)
    parser.add_argument("--tokens", type=int, default=4096, help="Hamlet tokens for perplexity")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--calib-samples", type=int, default=16, help="512-token samples")
    parser.add_argument("--true-seq", action="store_true", help="add true-sequential GPTQ rows")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated variant labels (and float)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON file to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    model = zoo.load_model("smollm2")
    tok = smollm2.tokenizer()
    stream = shakespeare.token_stream(tok, "test", max_tokens=args.tokens)
    calib = shakespeare.calibration_batches(tok, seq_len=512, n_samples=args.calib_samples)
    configs = {**CONFIGS, **(TRUE_SEQUENTIAL if args.true_seq else {})}
    if args.only:
        keep = set(args.only.split(","))
        configs = {k: v for k, v in configs.items() if k in keep}
    variants = {"float32": (model, 0.0)}
    for label, cfg in configs.items():
        variants[label] = timed(lambda cfg=cfg: ql.quantize(model, cfg, calib_data=calib))
        print(f"quantized {label} in {variants[label][1]:.1f} s", flush=True)
    status: dict[str, str] = {}
    if not args.no_peers:
        for make, int8, int4 in (
            (torchao_weight_only, "torchao int8wo", "torchao int4wo g128"),
            (quanto_weight_only, "quanto int8", "quanto int4"),
        ):
            found, st = make(model, int8, int4)
            variants.update({label: (m, secs) for label, (m, secs, _) in found.items()})
            status.update(st)

    rows: dict[str, dict] = {}
    for label, (m, secs) in list(variants.items()):
        try:
            ppl = measure_perplexity(m, stream, window=args.window)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run this model
            status[label] = f"failed to run: {type(exc).__name__}: {str(exc)[:200]}"
            del variants[label]
            continue
        ours = getattr(m, "quantlens_config", None) is not None or label == "float32"
        rows[label] = {
            "variant": label,
            "perplexity": round(ppl.perplexity, 3),
            "ppl_vs_float_pct": None,
            "checkpoint_mb": round(checkpoint_bytes(m) / 1e6, 2) if ours else None,
            "weight_mb_per_token": round(weight_bytes_per_token(m) / 1e6, 2) if ours else None,
            "quant_s": round(secs, 1),
        }
        print(f"perplexity {label}: {ppl.perplexity:.3f}", flush=True)
    base_ppl = rows["float32"]["perplexity"]
    for r in rows.values():
        r["ppl_vs_float_pct"] = round(100 * (r["perplexity"] / base_ppl - 1), 2)

    prompt = stream[:, : args.prompt]
    times: dict[str, dict[str, list]] = {k: {"ttft": [], "decode": []} for k in variants}
    with torch.no_grad():  # not inference_mode: optimum-quanto's int4 weights fail under it
        for round_ in range(args.rounds + 1):  # round 0 is the warm-up
            for label, (m, _) in list(variants.items()):
                try:
                    g = measure_generation(m, prompt, new_tokens=args.new_tokens, reps=1, warmup=0)
                except Exception as exc:  # noqa: BLE001 - a peer whose layers cannot generate
                    status[label] = f"failed to generate: {type(exc).__name__}: {str(exc)[:200]}"
                    del variants[label], times[label]
                    rows[label]["decode_tok_s"] = None
                    continue
                if round_:
                    times[label]["ttft"].append(g.time_to_first_token_s)
                    times[label]["decode"].append(args.new_tokens / g.decode_tokens_per_s)
                    times[label]["peak"] = max(times[label].get("peak", 0), g.peak_memory_bytes)
            print(f"timed round {round_}", flush=True)
    for label, t in times.items():
        if not t["decode"]:
            continue
        dec, ttft = statistics.median(t["decode"]), statistics.median(t["ttft"])
        rows[label].update(
            {
                "decode_tok_s": round(args.new_tokens / dec, 2),
                "decode_tok_s_p95": round(args.new_tokens / percentile(t["decode"], 95), 2),
                "prefill_tok_s": round(args.prompt / ttft, 1),
                "prefill_tok_s_p95": round(args.prompt / percentile(t["ttft"], 95), 1),
                "ttft_ms": round(ttft * 1e3, 1),
                "gen_peak_mb": round(t["peak"] / 1e6, 1),
            }
        )
    bandwidth = read_bandwidth()
    for r in rows.values():
        if r.get("decode_tok_s") and r.get("weight_mb_per_token"):
            r["decode_read_gb_s"] = round(r["weight_mb_per_token"] * r["decode_tok_s"] / 1e3, 2)
            r["read_bandwidth_pct"] = round(100 * r["decode_read_gb_s"] / bandwidth, 1)
    base = rows["float32"]["decode_tok_s"]
    ao4 = rows.get("torchao int4wo g128", {}).get("decode_tok_s")
    for r in rows.values():
        speed = r.get("decode_tok_s")
        r["decode_vs_float"] = round(speed / base, 3) if speed else None
        r["decode_vs_torchao_int4"] = round(speed / ao4, 3) if speed and ao4 else None

    result = {
        **run_info("llm", args.threads),
        "model": "SmolLM2-135M-Instruct (smollm2 zoo); float reference = dequantized Q4_1 model",
        "perplexity_text": f"Hamlet, first {stream.shape[1]} tokens, disjoint windows of "
        f"{args.window}",
        "calibration": f"{args.calib_samples} x 512 tokens of Macbeth, The Tempest, Othello",
        "generation": f"batch 1, greedy, prompt {args.prompt} tokens, {args.new_tokens} new "
        f"tokens, {args.rounds} round-robin rounds after a warm-up round",
        "read_bandwidth_gb_s": round(bandwidth, 2),
        "peers": status,
        "rows": list(rows.values()),
    }
    write_results(args.out, result)
    cols = ("perplexity", "ppl_vs_float_pct", "checkpoint_mb", "decode_tok_s", "prefill_tok_s")
    print(f"{'variant':28}" + "".join(f"{c:>18}" for c in cols + ("decode_vs_float",)))
    for r in rows.values():
        cells = "".join(f"{r.get(c)!s:>18}" for c in cols + ("decode_vs_float",))
        print(f"{r['variant']:28}{cells}")
    for name, st in status.items():
        print(f"peer {name}: {st}")
    print(f"read bandwidth {bandwidth:.2f} GB/s")
    print(f"wrote {args.out}")
    if args.out.resolve() == RESULTS:
        llm_page.main([])


if __name__ == "__main__":
    main()
