"""ONNX Runtime latency of quantlens' ONNX exports against ONNX Runtime's own quantization.

Run: python benchmarks/onnx_export.py [--repeats 30] [--budget 20] [--no-minilm]
Writes benchmarks/results/onnx_export.json and prints a table.

Part 1, ResNet-18-shaped zoo model (random weights, 224x224, batch 1), 1 and 2 threads:

- ``ort-fp32``: the float model exported to ONNX;
- ``ql-static-onnx``: ``ql.Static(backend="x86")`` calibrated in PyTorch, written by
  ``ql.export(format="onnx")`` (QDQ with the quantlens scales);
- ``ort-u8s8-pc``: ONNX Runtime's ``quantize_static`` of the float ONNX file (after its
  ``quant_pre_process``), QDQ, uint8 activations, int8 per-channel weights, calibrated on
  the same 8 images.

Part 2, MiniLM weight-only 4-bit (groups of 128, Linear + Embedding), batch 8 x 24
tokens, 1 thread: the two ONNX forms of a QLinear (``weight_op="matmulnbits"`` and
``"dequantize"``), with their mean embedding cosine against the quantlens model.

Every row: median and p95 over interleaved calls (so a busy machine slows them alike),
``ratio`` = the row's median over ``ort-u8s8-pc`` (part 1) or ``ort-fp32`` (part 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import warnings
from pathlib import Path

from _threads import ORT_SPINNING, set_wait_policy

set_wait_policy()

import torch
from _results import write_results
from _timing import interleaved

import quantlens as ql
from quantlens import zoo

RESULTS = Path(__file__).parent / "results" / "onnx_export.json"


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", ORT_SPINNING)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _ort_static(fp32: Path, calib: torch.Tensor, tmp: Path) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": b.numpy()} for b in calib.split(1)])

        def get_next(self):
            return next(self.batches, None)

    logging.getLogger().setLevel(logging.ERROR)  # quantize_static logs advice on the root logger
    pre = tmp / "fp32.pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    out = tmp / "ort-u8s8-pc.onnx"
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def resnet(tmp: Path, repeats: int, budget: float) -> list[dict]:
    model = zoo.load_model("resnet18")
    calib = zoo.load_dataset("random-224", "calib").inputs[:8]
    x = zoo.load_dataset("random-224", "test").inputs[:1]
    qm = ql.quantize(model, ql.Static(backend="x86"), calib_data=calib.split(1))
    paths = {
        "ort-fp32": ql.export(model, tmp / "fp32.onnx", format="onnx", example_inputs=(x,)),
        "ql-static-onnx": ql.export(qm, tmp / "ql.onnx", format="onnx", example_inputs=(x,)),
    }
    paths["ort-u8s8-pc"] = _ort_static(paths["ort-fp32"], calib, tmp)
    feed = x.numpy()
    with torch.no_grad():
        ref = qm(x).argmax(1)
    rows = []
    for threads in (1, 2):
        sessions = {k: _session(p, threads) for k, p in paths.items()}
        names = {k: s.get_inputs()[0].name for k, s in sessions.items()}
        calls = {k: (lambda s=s, n=names[k]: s.run(None, {n: feed})) for k, s in sessions.items()}
        timed = interleaved(
            calls, warmup=3, budget_s=budget, min_rounds=repeats, max_rounds=repeats
        )
        base = timed["ort-u8s8-pc"]["median_ms"]
        for label, t in timed.items():
            top = torch.from_numpy(calls[label]()[0]).argmax(1)
            rows.append(
                {
                    "part": "resnet18 static",
                    "variant": label,
                    "threads": threads,
                    "batch": 1,
                    **t,
                    "ratio_to_ort_u8s8_pc": t["median_ms"] / base,
                    "top1_equals_quantlens": bool((top == ref).all()),
                    "file_mb": os.path.getsize(paths[label]) / 1e6,
                }
            )
    return rows


def minilm(tmp: Path, repeats: int, budget: float) -> list[dict]:
    from quantlens.export import load_runner
    from quantlens.zoo.minilm import mean_pool, tokenize
    from quantlens.zoo.sentences import all_sentences

    model = zoo.load_model("minilm")
    qm = ql.quantize(model, ql.WeightOnly(bits=4, group_size=128, modules=("linear", "embedding")))
    example = tokenize(all_sentences()[:2], max_length=16)
    batch = tokenize(all_sentences()[:8])
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    paths = {
        "ort-fp32": ql.export(model, tmp / "m-fp32.onnx", format="onnx", example_inputs=example)
    }
    for op in ("matmulnbits", "dequantize"):
        paths[f"w4-{op}"] = ql.export(
            qm, tmp / f"m-{op}.onnx", format="onnx", example_inputs=example, weight_op=op
        )
    runners = {k: load_runner(p, threads=1) for k, p in paths.items()}
    calls = {k: (lambda r=r: r(*args)) for k, r in runners.items()}
    timed = interleaved(calls, warmup=2, budget_s=budget, min_rounds=repeats, max_rounds=repeats)
    enc = tokenize(all_sentences())
    with torch.inference_mode():
        ref = mean_pool(qm(**enc).last_hidden_state, enc["attention_mask"])
    rows = []
    for label, t in timed.items():
        out = runners[label](enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])[0]
        cos = (
            torch.nn.functional.cosine_similarity(ref, mean_pool(out, enc["attention_mask"]))
            .mean()
            .item()
        )
        rows.append(
            {
                "part": "minilm w4 g128",
                "variant": label,
                "threads": 1,
                "batch": 8,
                **t,
                "ratio_to_ort_fp32": t["median_ms"] / timed["ort-fp32"]["median_ms"],
                "cosine_vs_quantlens_w4": cos,
                "file_mb": os.path.getsize(paths[label]) / 1e6,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds of timing per part and thread count"
    )
    parser.add_argument("--no-minilm", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        rows = resnet(Path(tmp), args.repeats, args.budget)
        if not args.no_minilm:
            rows += minilm(Path(tmp), args.repeats, args.budget)
    result = {
        "benchmark": "onnx_export",
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "rows": rows,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    write_results(RESULTS, result)
    print(f"{'part':<17}{'variant':<17}{'thr':>4}{'median ms':>11}{'p95 ms':>9}{'ratio':>7}  extra")
    for r in rows:
        ratio = r.get("ratio_to_ort_u8s8_pc", r.get("ratio_to_ort_fp32"))
        extra = (
            f"top1 = quantlens: {r['top1_equals_quantlens']}"
            if "top1_equals_quantlens" in r
            else f"cosine {r['cosine_vs_quantlens_w4']:.5f}"
        )
        print(
            f"{r['part']:<17}{r['variant']:<17}{r['threads']:>4}{r['median_ms']:>11.2f}"
            f"{r['p95_ms']:>9.2f}{ratio:>7.2f}  {extra}, {r['file_mb']:.1f} MB"
        )


if __name__ == "__main__":
    main()
