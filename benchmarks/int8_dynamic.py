"""Dynamic int8 in one run: MiniLM and the zoo LSTM, fp32 vs quantlens vs torch.ao vs ONNX Runtime.

Run: python benchmarks/int8_dynamic.py [--threads 2] [--budget 25] [--skip-ort]
     [--loads idle,busy-core]
Writes benchmarks/results/int8_dynamic.json and prints a table.

MiniLM (all-MiniLM-L6-v2, real pretrained weights) variants:

- ``fp32``: the float model, eager PyTorch;
- ``ql-dynamic``: ``ql.Dynamic()`` (int8 per-channel weights, per-token asymmetric
  activation scales; the kernel path automatic dispatch picks: on VNNI/AMX CPUs the compiled
  op of ``python -m quantlens.nn.build_kernels`` where it is built, else ``torch._int_mm``,
  elsewhere fbgemm);
- ``ql-dynamic-python``: the same model on the pure-PyTorch ``int_mm`` path, measured only
  where ``ql-dynamic`` runs the compiled op (what the compiled op gains, in one run);
- ``ao-per-tensor`` / ``ao-per-channel``: ``torch.ao.quantization.quantize_dynamic`` with its
  default (per-tensor) and per-channel weight qconfigs;
- ``ort-fp32``: the float model exported to ONNX (opset 17), in ONNX Runtime;
- ``ort-dynamic`` / ``ort-dynamic-pc``: ``onnxruntime.quantization.quantize_dynamic``
  (int8 weights, per tensor / per channel).

Quality: mean cosine of mean-pooled, normalised sentence embeddings vs fp32 PyTorch over the
zoo ``sentences`` set (252 real sentences). Latency: batch 8 x seq 128 and batch 1 x seq 32
of real text (sentences joined to fill the length), median and p95. Calls are interleaved
(one timed call of each variant per round, PyTorch and ONNX Runtime calls grouped) so a
busy machine slows every variant alike;
each case gets a time budget (``--budget`` seconds), at least 5 rounds. ``speedup`` is fp32
PyTorch time over the row's time under the same load. Every case runs under each of
``--loads``: ``idle`` and ``busy-core`` (another process spinning on one core for the whole
case, benchmarks/_load.py); rows give the median (p50) and p95 of quantlens, float32 and
ONNX Runtime side by side.

LSTM (zoo ``digits-lstm``, trained on scikit-learn digits): fp32 vs ``ql-dynamic`` vs
``ao-per-channel``: test accuracy, logit cosine vs fp32, latency at batch 450 and 1.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

from _threads import FLAG, HELP, ORT_SPINNING, set_wait_policy

set_wait_policy()

import numpy as np
import torch
import torch.nn.functional as F
from _load import busy_core, parse_loads
from _results import write_results
from _timing import interleaved

import quantlens as ql
from quantlens import zoo
from quantlens.errors import NothingToQuantizeError
from quantlens.methods.dynamic import Dynamic
from quantlens.nn.dynamic_linear import DynamicLinear
from quantlens.nn.kernels.compiled import default_ops
from quantlens.zoo import minilm

RESULTS = Path(__file__).resolve().parent / "results" / "int8_dynamic.json"
MINILM_CASES = [(8, 128), (1, 32)]
LSTM_CASES = [450, 1]
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def long_text_batch(batch: int, seq: int) -> dict[str, torch.Tensor]:
    """Real sentences joined so every row fills ``seq`` tokens."""
    sentences = zoo.load_dataset("sentences").extra["texts"]
    per_row = max(1, seq // 10)
    texts = [
        " ".join(sentences[(i * per_row + j) % len(sentences)] for j in range(per_row + 4))
        for i in range(batch)
    ]
    return minilm.tokenize(texts, max_length=seq)


# --- MiniLM ------------------------------------------------------------------------------------


def python_path_copy(qm: torch.nn.Module) -> torch.nn.Module | None:
    """A copy of ``qm`` whose DynamicLinear layers run the pure-PyTorch ``int_mm`` path, or
    None where automatic dispatch does not take the compiled op (nothing to compare)."""
    layers = [m for m in qm.modules() if isinstance(m, DynamicLinear)]
    probe = [m.kernel_for(torch.zeros(8, m.in_features)).name for m in layers]
    if "compiled" not in probe:
        return None
    python = copy.deepcopy(qm)
    for m in python.modules():
        if isinstance(m, DynamicLinear):
            m.kernel = "int_mm"
    return python


def minilm_torch_variants(model) -> dict:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = ql.quantize(model, Dynamic())
        python = python_path_copy(qm)
        return {
            "fp32": model,
            "ql-dynamic": qm,
            **({"ql-dynamic-python": python} if python is not None else {}),
            "ao-per-tensor": quantize_dynamic(
                copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8
            ),
            "ao-per-channel": quantize_dynamic(
                copy.deepcopy(model),
                {torch.nn.Linear: per_channel_dynamic_qconfig},
                dtype=torch.qint8,
            ),
        }


class _Encoder(torch.nn.Module):
    """Positional (input_ids, attention_mask, token_type_ids) -> last_hidden_state, for export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state


def minilm_ort_sessions(model, threads: int, tmp: Path) -> dict:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path = tmp / "minilm.onnx"
    example = tuple(long_text_batch(2, 16)[k] for k in INPUTS)
    axes = {k: {0: "batch", 1: "seq"} for k in INPUTS} | {
        "last_hidden_state": {0: "batch", 1: "seq"}
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Encoder(model).eval(),
            example,
            str(fp32_path),
            dynamo=False,
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
        )
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic logs advice on the root logger
    try:  # ORT's recommended pre-processing (shape inference + graph optimization) first
        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre_path = tmp / "minilm.pre.onnx"
        quant_pre_process(str(fp32_path), str(pre_path))
        fp32_path = pre_path
    except Exception as exc:  # noqa: BLE001 - pre-processing is optional
        logging.getLogger(__name__).warning("ORT pre-processing skipped: %s", exc)
    paths = {"ort-fp32": fp32_path}
    for label, per_channel in (("ort-dynamic", False), ("ort-dynamic-pc", True)):
        paths[label] = tmp / f"{label}.onnx"
        quantize_dynamic(
            str(fp32_path), str(paths[label]), per_channel=per_channel, weight_type=QuantType.QInt8
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", ORT_SPINNING)
    return {
        k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        for k, p in paths.items()
    }


def ort_call(sess, batch: dict):
    feed = {k: batch[k].numpy() for k in INPUTS}
    return lambda: torch.from_numpy(np.asarray(sess.run(None, feed)[0]))


def minilm_rows(
    threads: int, budget: float, warmup: int, use_ort: bool, loads: tuple[str, ...]
) -> list[dict]:
    model = zoo.load_model("minilm")
    variants = minilm_torch_variants(model)
    sessions = {}
    if use_ort:
        with tempfile.TemporaryDirectory() as tmp:
            sessions = minilm_ort_sessions(model, threads, Path(tmp))
    sentences = zoo.load_dataset("sentences").batches(64)
    ref = minilm.mean_pooled_embeddings(model, sentences)
    quality = {}
    for label, m in variants.items():
        emb = minilm.mean_pooled_embeddings(m, sentences)
        quality[label] = {
            "mean_cosine": minilm.mean_cosine(ref, emb),
            "min_cosine": F.cosine_similarity(ref, emb, dim=-1).min().item(),
        }
    for label, sess in sessions.items():
        emb = torch.cat(
            [minilm.mean_pool(ort_call(sess, b)(), b["attention_mask"]) for b in sentences]
        )
        quality[label] = {
            "mean_cosine": minilm.mean_cosine(ref, emb),
            "min_cosine": F.cosine_similarity(ref, emb, dim=-1).min().item(),
        }
    rows = []
    for load, (batch, seq) in ((ld, c) for ld in loads for c in MINILM_CASES):
        inputs = long_text_batch(batch, seq)
        calls = {label: (lambda m=m, inputs=inputs: m(**inputs)) for label, m in variants.items()}
        calls |= {label: ort_call(sess, inputs) for label, sess in sessions.items()}
        with busy_core(load == "busy-core"):
            stats = interleaved(
                calls,
                warmup=warmup,
                budget_s=budget,
                runtimes={label: "onnxruntime" for label in sessions},
            )
        base = stats["fp32"]["median_ms"]
        ort_best = min(
            (stats[k]["median_ms"] for k in ("ort-dynamic", "ort-dynamic-pc") if k in stats),
            default=None,
        )
        for label, s in stats.items():
            rows.append(
                {
                    "model": "minilm",
                    "load": load,
                    "batch": batch,
                    "seq": seq,
                    "variant": label,
                    **s,
                    "speedup": base / s["median_ms"],
                    "vs_ort_best_int8": ort_best / s["median_ms"] if ort_best else None,
                    **quality[label],
                }
            )
    return rows


# --- LSTM --------------------------------------------------------------------------------------


def lstm_rows(budget: float, warmup: int, loads: tuple[str, ...]) -> list[dict]:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = zoo.load_model("digits-lstm")
    test = zoo.load_dataset("digits-seq", "test")
    try:  # Dynamic keeps the 64-wide LSTM and its 10-output head float (int8 is slower there)
        qm = ql.quantize(model, Dynamic())
    except NothingToQuantizeError:
        qm = model  # what the user keeps: the float model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        variants = {
            "fp32": model,
            "ql-dynamic": qm,
            "ao-per-channel": quantize_dynamic(
                copy.deepcopy(model),
                {
                    torch.nn.LSTM: per_channel_dynamic_qconfig,
                    torch.nn.Linear: per_channel_dynamic_qconfig,
                },
                dtype=torch.qint8,
            ),
        }
    with torch.inference_mode():
        logits = {label: m(test.inputs) for label, m in variants.items()}
    rows = []
    for load, batch in ((ld, b) for ld in loads for b in LSTM_CASES):
        x = test.inputs[:batch]
        with busy_core(load == "busy-core"):
            stats = interleaved(
                {label: (lambda m=m, x=x: m(x)) for label, m in variants.items()},
                warmup=warmup,
                budget_s=budget / 4,
            )
        base = stats["fp32"]["median_ms"]
        for label, s in stats.items():
            rows.append(
                {
                    "model": "digits-lstm",
                    "load": load,
                    "batch": batch,
                    "variant": label,
                    **s,
                    "speedup": base / s["median_ms"],
                    "accuracy": (logits[label].argmax(1) == test.labels).float().mean().item(),
                    "logit_cosine": F.cosine_similarity(logits["fp32"], logits[label], dim=-1)
                    .mean()
                    .item(),
                }
            )
    return rows


def cpu_int8_features() -> list[str]:
    """Which int8 dot-product instructions the CPU has (AVX2 only: u8 x s8 pairs in int16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return sorted(
        {f for f in flags if f in ("avx2", "avx512_vnni", "avx_vnni", "amx_int8", "avx512bw")}
    )


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'model':12} {'load':9} {'shape':>7} {'variant':17} {'median ms':>10} {'p95 ms':>9} "
        f"{'speedup':>8} {'vs ORT':>7} {'quality':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        shape = f"{r['batch']}x{r['seq']}" if "seq" in r else str(r["batch"])
        vs_ort = f"{r['vs_ort_best_int8']:.2f}x" if r.get("vs_ort_best_int8") else ""
        quality = r.get("mean_cosine", r.get("logit_cosine"))
        extra = f" acc {r['accuracy']:.3f}" if "accuracy" in r else ""
        print(
            f"{r['model']:12} {r['load']:9} {shape:>7} {r['variant']:17} {r['median_ms']:10.2f} "
            f"{r['p95_ms']:9.2f} {r['speedup']:7.2f}x {vs_ort:>7} {quality:9.5f}{extra}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(FLAG, action="store_true", help=HELP)
    parser.add_argument(
        "--budget", type=float, default=25.0, help="seconds of timed rounds per MiniLM case"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip-ort", action="store_true")
    parser.add_argument(
        "--loads", default="idle,busy-core", help="idle and/or busy-core (one core kept busy)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    loads = parse_loads(args.loads)
    rows = minilm_rows(
        args.threads, args.budget, args.warmup, not args.skip_ort, loads
    ) + lstm_rows(args.budget, args.warmup, loads)
    result = {
        "benchmark": "int8_dynamic",
        "threads": args.threads,
        "loads": list(loads),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (spin, then sleep)"),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "quantized_engine": torch.backends.quantized.engine,
        "machine": platform.machine(),
        "cpu_int8_features": cpu_int8_features(),
        "compiled_int8_kernel": default_ops().load(),
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_results(RESULTS, result)
    print_table(rows)
    print(f"wrote {RESULTS} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
