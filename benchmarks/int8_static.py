"""Latency of static int8 CNNs: fp32 eager vs quantlens Static / QAT-converted (torch.ao
x86 kernels) vs ONNX Runtime's own static quantization, on the same models in one run.

Run: python benchmarks/int8_static.py [--threads 2] [--repeats 30] [--no-pt2e]
     [--loads idle,busy-core]
Writes benchmarks/results/int8_static.json and prints two tables (every row; then p50 / p95 of
float32, quantlens and ONNX Runtime side by side per case and load).

Cases: ResNet-18-shaped (zoo ``resnet18``, random weights, 224x224) at batch 1 and 8, and
``digits-cnn`` at batch 256. Variants per case:

- ``fp32``: the float model, eager PyTorch;
- ``ql-static``: ``ql.Static(backend="x86", observer="histogram")``, calibrated;
- ``ql-qat``: ``ql.QAT()`` prepared and converted (same int8 graph as after training);
- ``ort-fp32``: the float model in ONNX Runtime (reference for the ORT rows);
- ``ort-u8s8-pc``: ``quantize_static`` QDQ, uint8 activations, int8 per-channel weights;
- ``ort-s8s8``: ``quantize_static`` defaults (QDQ, int8 activations and weights per tensor);
- ``pt2e-inductor``: torchao PT2E + X86InductorQuantizer + ``torch.compile`` with Inductor
  freezing (without freezing the int8 convolutions are not lowered to oneDNN and the
  model runs barely faster than fp32). The quantizer rejects a module called twice
  ("Input partition has more than one output node"), and the ResNet block calls its one
  ReLU twice, as torchvision's does; so this row runs on a copy with a second ReLU per
  block (the same weights and function). ``--no-pt2e`` skips it.

Every row: median (p50) and p95 over ``repeats`` timed calls after a warm-up (variants
interleaved call by call, so a busy machine slows them alike), with PyTorch and
ONNX Runtime both limited to ``threads`` intra-op threads; ``speedup`` is fp32-eager time
over the row's time and ``vs_ort`` ORT U8S8 per-channel's time over the row's time, both
under the same load. Every case runs under each of ``--loads``: ``idle`` and ``busy-core``
(another process spinning on one core for the whole case, benchmarks/_load.py). The JSON's
``side_by_side`` lists, per case and load, the p50 / p95 of ``fp32``, ``ql-static`` and
``ort-u8s8-pc``, and ``batch1_profile`` where ResNet-18's batch-1 time goes in quantlens and
in ONNX Runtime (benchmarks/_static_profile.py). Synthetic inputs for ResNet (speed only);
real digits for digits-cnn.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
import types
import warnings
from pathlib import Path

from _threads import FLAG, HELP, ORT_SPINNING, set_wait_policy

set_wait_policy()  # before torch starts its thread pool

import numpy as np
import torch
from _load import busy_core, parse_loads
from _results import run_info, write_results
from _side_by_side import side_by_side, side_by_side_table
from _static_profile import profile_batch1
from _timing import interleaved, summarize

import quantlens as ql
from quantlens import zoo

RESULTS = Path(__file__).resolve().parent / "results" / "int8_static.json"
CASES = [("resnet18", 1), ("resnet18", 8), ("digits-cnn", 256)]


def data_for(name: str):
    if name == "resnet18":
        calib = zoo.load_dataset("random-224", "calib").inputs  # (8, 3, 224, 224)
        test = zoo.load_dataset("random-224", "test").inputs
        return calib, test
    return zoo.load_dataset("digits", "calib").inputs, zoo.load_dataset("digits", "test").inputs


def torch_variants(name: str, model, calib) -> dict:
    out = {"fp32": model}
    out["ql-static"] = ql.quantize(
        model, ql.Static(backend="x86", observer="histogram"), calib_data=calib.split(8)
    )
    out["ql-qat"] = ql.quantize(model, ql.QAT(backend="x86"), calib_data=calib.split(8))
    return out


def ort_variants(model, calib, threads: int, tmp: Path) -> dict:
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    fp32_path = tmp / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (calib[:1],),
            str(fp32_path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=17,
        )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": b.numpy()} for b in calib.split(8)])

        def get_next(self):
            return next(self.batches, None)

    logging.getLogger().setLevel(logging.ERROR)  # quantize_static logs advice on the root logger
    try:  # ORT's recommended pre-processing (shape inference + graph optimization) first
        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre_path = tmp / "model.pre.onnx"
        quant_pre_process(str(fp32_path), str(pre_path))
        fp32_path = pre_path
    except Exception as exc:  # noqa: BLE001 - pre-processing is optional
        logging.getLogger(__name__).warning("ORT pre-processing skipped: %s", exc)
    paths = {"ort-fp32": fp32_path}
    settings = {
        "ort-u8s8-pc": {
            "activation_type": QuantType.QUInt8,
            "weight_type": QuantType.QInt8,
            "per_channel": True,
        },
        "ort-s8s8": {},  # quantize_static's defaults: QDQ, int8 activations and weights, per tensor
    }
    for label, kwargs in settings.items():
        paths[label] = tmp / f"{label}.onnx"
        quantize_static(
            str(fp32_path), str(paths[label]), Reader(), quant_format=QuantFormat.QDQ, **kwargs
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", ORT_SPINNING)
    sessions = {
        k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        for k, p in paths.items()
    }
    return sessions


def _one_relu_per_call(model):
    """A copy of a zoo ResNet whose blocks call two ReLU modules instead of one twice."""
    from quantlens.zoo.models import BasicBlock

    def forward(block, x):
        identity = x if block.downsample is None else block.downsample(x)
        out = block.relu(block.bn1(block.conv1(x)))
        return block.relu_out(block.bn2(block.conv2(out)) + identity)

    model = copy.deepcopy(model)
    for block in model.modules():
        if isinstance(block, BasicBlock):
            block.relu_out = torch.nn.ReLU()
            block.forward = types.MethodType(forward, block)
    return model


def pt2e_variant(model, calib, batches: list[int]):
    """torchao PT2E + X86InductorQuantizer + torch.compile, compiled and run once at every
    batch size the cases time (None and a reason if any of it fails)."""
    try:
        import torch._inductor.config as inductor_config
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

        quantizer = xiq.X86InductorQuantizer().set_global(
            xiq.get_default_x86_inductor_quantization_config()
        )
        batch = torch.export.Dim("batch")
        exported = torch.export.export(
            _one_relu_per_call(model), (calib[:2],), dynamic_shapes=({0: batch},)
        )
        prepared = prepare_pt2e(exported.module(), quantizer)
        for b in calib.split(8):
            prepared(b)
        converted = convert_pt2e(prepared)
        inductor_config.freezing = True  # constant-fold and prepack the int8 weights for oneDNN
        compiled = torch.compile(converted)
        start = time.perf_counter()
        with torch.no_grad():
            for batch in batches:
                compiled(batch_of(calib, batch))
        return compiled, time.perf_counter() - start, None
    except Exception as exc:  # noqa: BLE001 - report any failure as a row note
        return (
            None,
            0.0,
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
        )


def batch_of(test: torch.Tensor, batch: int) -> torch.Tensor:
    reps = -(-batch // len(test))
    return test.repeat(reps, *([1] * (test.ndim - 1)))[:batch]


def time_case(
    name, batch, x, variants, sessions, compiled, *, warmup: int, repeats: int, load: str
) -> list[dict]:
    """Rows for one (model, batch) under ``load``: every torch variant, the pt2e model, every
    ORT session.

    Calls are interleaved (one timed call of each variant per round, PyTorch and ONNX
    Runtime calls grouped), so load from other processes falls on every variant alike."""
    reps = repeats if batch <= 8 else max(5, repeats // 2)
    calls = {label: (lambda m=m: m(x)) for label, m in variants.items()}
    if compiled is not None:
        calls["pt2e-inductor"] = lambda: compiled(x)
    feed = {"x": x.numpy()}
    for label, sess in sessions.items():
        calls[label] = lambda sess=sess: torch.from_numpy(np.asarray(sess.run(None, feed)[0]))
    with torch.inference_mode():
        ref = variants["fp32"](x).argmax(1)
        agree = {
            label: (call().argmax(1) == ref).float().mean().item() for label, call in calls.items()
        }
    stats = interleaved(
        calls,
        warmup=warmup,
        budget_s=0.0,
        min_rounds=reps,
        max_rounds=reps,
        runtimes={label: "onnxruntime" for label in sessions},
    )
    base = stats["fp32"]["median_ms"]
    ort = stats.get("ort-u8s8-pc", {}).get("median_ms")
    return [
        {
            "model": name,
            "load": load,
            "batch": batch,
            "variant": label,
            **t,
            "speedup": base / t["median_ms"],
            "vs_ort": ort / t["median_ms"] if ort else None,
            "top1_agreement": agree[label],
        }
        for label, t in stats.items()
    ]


def kernel_rows(repeats: int, load: str) -> list[dict]:
    """One 3x3 conv (64->64 channels, batch 8, 56x56) in fp32 vs the int8 x86 kernel: the
    ceiling for any whole-model int8 speedup on this CPU."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.rand(8, 64, 56, 56, generator=torch.Generator().manual_seed(0))
    qconv = ql.quantize(conv, ql.Static(observer="minmax"), calib_data=[x])
    calls = {"fp32": lambda: conv(x), "ql-static": lambda: qconv(x)}
    times: dict[str, list[float]] = {k: [] for k in calls}
    with torch.inference_mode():
        for _ in range(repeats + 2):
            for label, call in calls.items():
                start = time.perf_counter()
                call()
                times[label].append(time.perf_counter() - start)
    base = statistics.median(times["fp32"][2:])
    return [
        {
            "model": "conv3x3-64",
            "load": load,
            "batch": 8,
            "variant": k,
            **summarize(v[2:]),
            "speedup": base / statistics.median(v[2:]),
        }
        for k, v in times.items()
    ]


def run(
    threads: int,
    repeats: int,
    warmup: int,
    pt2e: bool,
    models: list[str] | None = None,
    loads: tuple[str, ...] = ("idle",),
) -> dict:
    torch.set_num_threads(threads)
    rows, profiles = [], {}
    for load in loads:
        with busy_core(load == "busy-core"):
            rows += kernel_rows(repeats, load)
    with tempfile.TemporaryDirectory() as tmp_name:
        for name in dict.fromkeys(n for n, _ in CASES if models is None or n in models):
            model = zoo.load_model(name)
            calib, test = data_for(name)
            started = time.perf_counter()
            variants = torch_variants(name, model, calib)
            rows.append(
                {
                    "model": name,
                    "variant": "ql-quantize-time",
                    "seconds": time.perf_counter() - started,
                }
            )
            tmp = Path(tmp_name) / name
            tmp.mkdir()
            sessions = ort_variants(model, calib, threads, tmp)
            if name == "resnet18":  # where the batch-1 time goes, ours and ORT's (idle)
                profiles[name] = profile_batch1(
                    variants["ql-static"], tmp / "ort-u8s8-pc.onnx", test[:1], threads
                )
            compiled = None
            if pt2e:
                compiled, compile_s, error = pt2e_variant(
                    model, calib, [b for n, b in CASES if n == name]
                )
                rows.append(
                    {"model": name, "variant": "pt2e-compile", "seconds": compile_s, "error": error}
                )
            for load in loads:
                for case_name, batch in CASES:
                    if case_name != name:
                        continue
                    x = batch_of(test, batch)
                    with busy_core(load == "busy-core"):
                        rows += time_case(
                            name,
                            batch,
                            x,
                            variants,
                            sessions,
                            compiled,
                            warmup=warmup,
                            repeats=repeats,
                            load=load,
                        )
    return {
        **run_info("int8_static", threads),
        "onnxruntime": __import__("onnxruntime").__version__,
        "loads": list(loads),
        "side_by_side": side_by_side(rows, SIDE_BY_SIDE, "ql-static"),
        "batch1_profile": profiles,
        "rows": rows,
    }


SIDE_BY_SIDE = ("fp32", "ql-static", "ort-u8s8-pc")


def table(result: dict) -> str:
    lines = [
        (
            f"{'model':<11}{'load':<10}{'batch':>6}  {'variant':<15}{'median ms':>10}{'p95 ms':>9}"
            f"{'speedup':>9}{'vs ORT':>8}{'agree':>7}"
        )
    ]
    for r in result["rows"]:
        if "median_ms" not in r:
            note = f"failed: {r['error'][:70]}" if r.get("error") else f"{r['seconds']:.1f} s"
            lines.append(f"{r['model']:<11}{'':<10}{'':>6}  {r['variant']:<15} {note}")
            continue
        agree = f"{r['top1_agreement']:.3f}" if "top1_agreement" in r else "-"
        vs_ort = f"{r['vs_ort']:.2f}x" if r.get("vs_ort") else "-"
        lines.append(
            f"{r['model']:<11}{r['load']:<10}{r['batch']:>6}  {r['variant']:<15}"
            f"{r['median_ms']:>10.2f}{r['p95_ms']:>9.2f}{r['speedup']:>8.2f}x{vs_ort:>8}{agree:>7}"
        )
    lines += [
        "",
        "p50 / p95 ms side by side",
        side_by_side_table(result["side_by_side"], SIDE_BY_SIDE, "ql-static"),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(FLAG, action="store_true", help=HELP)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-pt2e", action="store_true", help="skip torchao PT2E + torch.compile")
    parser.add_argument("--models", nargs="*", help="subset of: resnet18 digits-cnn")
    parser.add_argument(
        "--loads", default="idle,busy-core", help="idle and/or busy-core (one core kept busy)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    result = run(
        args.threads,
        args.repeats,
        args.warmup,
        not args.no_pt2e,
        args.models,
        parse_loads(args.loads),
    )
    result["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result)
    print(table(result))
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
