"""Where a batch-1 static int8 CNN spends its time, in quantlens and in ONNX Runtime: the
profile that explains the gap between the two (written into int8_static.json).

- ``ql_ops_us``: self CPU time per forward of each PyTorch op (torch.profiler), the top ones;
- ``ort_ops_us``: kernel time per run of each ONNX Runtime op type (its own profiler);
- ``conv_share``: the convolutions' share of each total;
- ``conv_call_us``: one int8 3x3 convolution on a 1x1 input (8 channels), packed for oneDNN
  (what the x86 engine picks for symmetric weights on a VNNI CPU) and for fbgemm, and the
  float one: the fixed cost of one call, paid by each of ResNet-18's 20 convolutions.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

import quantlens as ql

TOP = 12


def ql_ops(model: torch.nn.Module, x: torch.Tensor, calls: int) -> dict[str, float]:
    """Self CPU microseconds per forward of each op (the :data:`TOP` largest)."""
    from torch.profiler import profile

    with torch.inference_mode():
        for _ in range(3):
            model(x)
        with profile() as prof:
            for _ in range(calls):
                model(x)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    return {e.key: round(e.self_cpu_time_total / calls, 1) for e in events[:TOP]}


def ort_ops(onnx_path: Path, x: torch.Tensor, threads: int, calls: int) -> dict[str, float]:
    """Kernel microseconds per run of each ONNX Runtime op type."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(onnx_path.with_suffix(""))
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    for _ in range(3 + calls):  # 3 warm-up runs, then the counted ones
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    cutoff = runs[3] if len(runs) > 3 else 0
    totals: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= cutoff:
            op = e["args"].get("op_name", "?")
            totals[op] = totals.get(op, 0.0) + e["dur"]
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:TOP]
    return {op: round(us / max(1, len(runs) - 3), 1) for op, us in top}


def conv_call_us(threads: int, calls: int = 300) -> dict[str, float]:
    """Median microseconds of one tiny int8 conv call per kernel (the fixed per-call cost)."""
    conv = torch.nn.Conv2d(8, 8, 3, padding=1).eval()
    x = torch.rand(1, 8, 1, 1)
    out = {}
    modules = {"fp32": conv}
    for engine in ("onednn", "fbgemm"):
        qm = ql.quantize(conv, ql.Static(backend=engine, observer="minmax"), calib_data=[x])
        modules[f"int8-{engine}"] = qm
    torch.backends.quantized.engine = "x86"
    with torch.inference_mode():
        for label, m in modules.items():
            for _ in range(20):
                m(x)
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                m(x)
                times.append(time.perf_counter() - t0)
            out[label] = round(statistics.median(times) * 1e6, 1)
    return out


def profile_batch1(
    model: torch.nn.Module, onnx_path: Path, x: torch.Tensor, threads: int, calls: int = 20
) -> dict:
    """The batch-1 profile of ``model`` (quantlens Static) beside ``onnx_path`` (ORT)."""
    ours = ql_ops(model, x, calls)
    theirs = ort_ops(onnx_path, x, threads, calls)

    def share(ops: dict[str, float], conv: str) -> float:
        return round(sum(v for k, v in ops.items() if conv in k) / sum(ops.values()), 3)

    return {
        "batch": int(x.shape[0]),
        "ql_ops_us": ours,
        "ort_ops_us": theirs,
        "conv_share": {
            "ql": share(ours, "quantized::conv2d"),
            "ort": share(theirs, "QLinearConv"),
        },
        "conv_call_us": conv_call_us(threads),
    }
