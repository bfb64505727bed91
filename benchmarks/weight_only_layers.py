"""Latency of one weight-only Linear: float baselines, every quantlens kernel path, auto
dispatch, and the torchao / optimum-quanto equivalents, all measured in one run.

Run: python benchmarks/weight_only_layers.py [--shapes 4096x4096,4096x11008] [--batches 1,8,64]
     [--repeats 15] [--threads 2] [--no-peers] [--bw-mb 1024] [--budget-s 1.0]
     [--loads idle,busy-core] [--no-ort]
Writes benchmarks/results/weight_only_layers.json and prints a table.

Every (shape, batch) is timed under each of ``--loads``: ``idle`` and ``busy-core`` (another
process spinning on one core, benchmarks/_load.py); ``speedup_vs_fp32`` compares with float32
under the same load. ``ort`` rows run the layer as quantlens exports it to ONNX
(MatMulNBits) in ONNX Runtime with the same thread count.

Shapes are ``in_features x out_features``. ``auto`` rows are what automatic dispatch
picks with activations kept float (the default); ``auto+aq`` rows with
``allow_activation_quant=True`` (W8A8 fbgemm allowed). Variants of one (shape, batch) are timed
round-robin (one call of each per round, after a warm-up) so that load from other
processes on a shared machine hits them alike; each row reports median and p95 and the
ratio to float32 in the same run. At batch 1 the achieved weight-read bandwidth (weight
bytes the path reads / median time) is given as a fraction of the machine's read
bandwidth, measured here as ``torch.sum`` over a ``--bw-mb`` float32 tensor.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from _load import busy_core, parse_loads
from _results import write_results
from _threads import ORT_SPINNING
from torch import nn

import quantlens as ql
from quantlens import QScheme, quantize_tensor
from quantlens.nn import QLinear

RESULTS = Path(__file__).resolve().parent / "results" / "weight_only_layers.json"
OUR_SCHEMES = {  # name -> (scheme, forced paths to time besides auto)
    "ql int4 g128": (
        QScheme(bits=4, symmetric=False, granularity="per_group", group_size=128),
        ("int4pack", "fbgemm", "dense_bf16", "dense"),
    ),
    "ql int8 channel": (
        QScheme(bits=8, granularity="per_channel"),
        ("int8pack", "fbgemm", "dense_bf16", "dense"),
    ),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def memory_bandwidth(mb: int, repeats: int = 5) -> float:
    """Read bandwidth in bytes/s: torch.sum over an ``mb`` MiB float32 tensor."""
    big = torch.ones(mb * 2**20 // 4)
    big.sum()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        big.sum()
        times.append(time.perf_counter() - start)
    return big.numel() * 4 / min(times)


def state_bytes(layer: QLinear, path: str, dtype: torch.dtype) -> int:
    """Bytes of the weight format ``path`` reads (tensors in its cached state)."""
    from quantlens.nn import kernel_paths

    compute = kernel_paths()[path].compute_dtype or dtype
    state = layer._cache.get(("kernel", path, compute))
    items = state if isinstance(state, tuple) else (state,)
    total = sum(t.numel() * t.element_size() for t in items if isinstance(t, torch.Tensor))
    return total or layer.weight_shape[0] * layer.weight_shape[1]  # opaque (fbgemm): 1 byte/weight


def peer_layers(linear: nn.Linear, group_size: int) -> tuple[dict, dict]:
    """``{name: (module, input dtype)}`` for the peers that install, and ``{name: error}``."""
    made, failed = {}, {}

    def attempt(name, build):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                made[name] = build()
        except Exception as exc:  # noqa: BLE001 - a peer failing is a result, recorded
            failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

    def torchao(config_factory, dtype):
        def build():
            from torchao.quantization import quantize_

            model = copy.deepcopy(linear).to(dtype)
            quantize_(model, config_factory())
            return model, dtype

        return build

    def quanto(qtype_name):
        def build():
            import optimum.quanto as oq

            model = nn.Sequential(copy.deepcopy(linear))
            oq.quantize(model, weights=getattr(oq, qtype_name))
            oq.freeze(model)
            return model, torch.float32

        return build

    def int8_config():
        from torchao.quantization import Int8WeightOnlyConfig

        return Int8WeightOnlyConfig()

    def int4_config():
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

        return PrototypeInt4WeightOnlyConfig(group_size=group_size)

    log("building peers")
    attempt("torchao int8 (bf16)", torchao(int8_config, torch.bfloat16))
    attempt("torchao int8 (fp32)", torchao(int8_config, torch.float32))
    attempt("torchao int4 g128 (bf16)", torchao(int4_config, torch.bfloat16))
    attempt("quanto qint8", quanto("qint8"))
    attempt("quanto qint4 g128", quanto("qint4"))
    log(f"peers built: {sorted(made)}; failed: {sorted(failed)}")
    return made, failed


def time_round_robin(fns: dict, *, warmup: int, repeats: int, budget_s: float) -> dict:
    """Median / p95 seconds per callable, timed one call each per round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {k: [] for k in fns}
    start = time.perf_counter()
    for r in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t)
        if r >= 2 and time.perf_counter() - start > budget_s * len(fns):
            break
    out = {}
    for k, ts in samples.items():
        ts.sort()
        out[k] = {
            "median_s": statistics.median(ts),
            "p95_s": ts[min(len(ts) - 1, round(0.95 * (len(ts) - 1)))],
            "n": len(ts),
        }
    return out


def ort_calls(layers: dict, x: torch.Tensor, threads: int, tmp: Path) -> dict:
    """``{"<name> ort": callable}``: each layer exported with ``ql.export`` (MatMulNBits) and
    run in ONNX Runtime on ``x`` (empty when ONNX Runtime or the exporter is missing)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", ORT_SPINNING)
    calls = {}
    for name, layer in layers.items():
        path = tmp / f"{name.replace(' ', '_')}_{x.shape[0]}.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ql.export(nn.Sequential(layer), path, format="onnx", example_inputs=(x,))
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a failed export is a result, logged
            log(f"  {name} ort: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        feed = {sess.get_inputs()[0].name: x.numpy()}
        calls[f"{name} ort"] = lambda sess=sess, feed=feed: sess.run(None, feed)
    return calls


def bench_shape(k: int, n: int, args, bandwidth: float, peers_info: dict) -> list[dict]:
    torch.manual_seed(0)
    linear = nn.Linear(k, n)
    w32 = linear.weight.detach()
    w16, b16 = w32.bfloat16(), linear.bias.detach().bfloat16()
    layers = {
        name: QLinear.from_float(linear, quantize_tensor(w32, scheme))
        for name, (scheme, _) in OUR_SCHEMES.items()
    }
    peers, failed = ({}, {}) if args.no_peers else peer_layers(linear, 128)
    for name, err in failed.items():
        peers_info.setdefault(name, err)
    for name in peers:
        peers_info.setdefault(name, "ok")
    rows = []
    for batch in args.batches:
        x32 = torch.randn(batch, k)
        x16 = x32.bfloat16()
        variants = {  # label -> (callable, input dtype, weight bytes read, path)
            "fp32": (
                lambda x=x32: F.linear(x, w32, linear.bias),
                torch.float32,
                4 * n * k,
                "float",
            ),
            "bf16": (lambda x=x16: F.linear(x, w16, b16), torch.bfloat16, 2 * n * k, "float"),
        }
        for name, (_, paths) in OUR_SCHEMES.items():
            layer = layers[name]
            # float32 input through every path, then what auto-dispatch picks for each dtype
            runs = [(p_, torch.float32, x32, False) for p_ in paths]
            runs += [
                ("auto", dt, xin, aq)
                for aq in (False, True)
                for dt, xin in ((torch.float32, x32), (torch.bfloat16, x16))
            ]
            for path, dtype, xin, aq in runs:
                layer.kernel, layer.allow_activation_quant = "auto", aq
                chosen = layer.kernel_for(batch, dtype) if path == "auto" else path

                def fn(layer=layer, path=path, xin=xin, aq=aq):
                    layer.kernel, layer.allow_activation_quant = path, aq
                    return layer(xin)

                fn()  # builds the path's cache
                tag = "fp32" if dtype == torch.float32 else "bf16"
                auto = ("auto+aq" if aq else "auto") + "->" + chosen
                label = f"{name} {path if path != 'auto' else auto} [{tag} in]"
                variants[label] = (fn, dtype, state_bytes(layer, chosen, dtype), chosen)

        for name, (module, dtype) in list(peers.items()):
            xin = x32 if dtype == torch.float32 else x16
            fn = lambda m=module, xin=xin: m(xin)
            try:
                with torch.no_grad():
                    tic = time.perf_counter()
                    fn()
                    log(f"  {name} first call {time.perf_counter() - tic:.2f}s")
            except Exception as exc:  # noqa: BLE001 - a peer failing is a result, recorded
                peers_info[name] = (
                    f"forward failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                )
                del peers[name]
                continue
            variants[name] = (fn, dtype, None, "peer")
        if not args.no_ort:
            with tempfile.TemporaryDirectory() as tmp:
                for label, fn in ort_calls(layers, x32, args.threads, Path(tmp)).items():
                    variants[label] = (fn, torch.float32, None, "onnxruntime")
        for load in args.loads:
            log(f"{k}x{n} batch {batch} {load}: timing {len(variants)} variants")
            with torch.no_grad(), busy_core(load == "busy-core"):
                timings = time_round_robin(
                    {k_: v[0] for k_, v in variants.items()},
                    warmup=args.warmup,
                    repeats=args.repeats,
                    budget_s=args.budget_s,
                )
            rows += _rows(k, n, batch, load, variants, timings, bandwidth)
    for layer in layers.values():
        layer.kernel = "auto"
    return rows


def _rows(
    k: int, n: int, batch: int, load: str, variants: dict, timings: dict, bandwidth: float
) -> list[dict]:
    """One result row per variant of a (shape, batch, load) case."""
    base, rows = timings["fp32"]["median_s"], []
    for label, (_, dtype, nbytes, path) in variants.items():
        t = timings[label]
        row = {
            "shape": f"{k}x{n}",
            "batch": batch,
            "load": load,
            "variant": label,
            "path": path,
            "input_dtype": str(dtype).removeprefix("torch."),
            "median_ms": t["median_s"] * 1e3,
            "p95_ms": t["p95_s"] * 1e3,
            "n": t["n"],
            "speedup_vs_fp32": base / t["median_s"],
        }
        if nbytes and batch == 1:
            row["weight_bytes"] = nbytes
            row["bandwidth_fraction"] = nbytes / t["median_s"] / bandwidth
        rows.append(row)
    return rows


def speedup_ranges(rows: list[dict]) -> list[dict]:
    """The range of ``speedup_vs_fp32`` over the shapes of each (batch, quantlens variant):
    the summary the kernel dispatch rules (quantlens.nn.kernels) are read from."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["variant"].startswith("ql "):
            groups.setdefault((r["batch"], r["variant"]), []).append(r)
    return [
        {
            "batch": batch,
            "variant": variant,
            "shapes": len(group),
            "speedup_min": min(r["speedup_vs_fp32"] for r in group),
            "speedup_max": max(r["speedup_vs_fp32"] for r in group),
        }
        for (batch, variant), group in sorted(groups.items())
    ]


def print_table(result: dict) -> None:
    print(
        f"read bandwidth {result['machine']['read_bandwidth_gb_s']:.1f} GB/s, "
        f"threads {result['machine']['threads']}, {result['machine']['cpu_capability']}"
    )
    print(
        f"{'shape':<11}{'batch':>6} {'load':<10}{'variant':<52}{'median ms':>10}{'p95 ms':>9}"
        f"{'x fp32':>8}{'BW frac':>9}"
    )
    for r in result["rows"]:
        bw = f"{r['bandwidth_fraction']:.2f}" if "bandwidth_fraction" in r else ""
        print(
            f"{r['shape']:<11}{r['batch']:>6} {r.get('load', 'idle'):<10}{r['variant']:<52}"
            f"{r['median_ms']:>10.3f}"
            f"{r['p95_ms']:>9.3f}{r['speedup_vs_fp32']:>8.2f}{bw:>9}"
        )
    for name, status in result["peers"].items():
        print(f"peer {name}: {status}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="4096x4096,4096x11008", help="in x out, comma separated")
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--budget-s", type=float, default=0.6, help="rough seconds per variant per batch"
    )
    p.add_argument("--bw-mb", type=int, default=1024)
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--no-ort", action="store_true", help="leave out the ONNX Runtime rows")
    p.add_argument("--loads", default="idle,busy-core", help="idle and/or busy-core")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.loads = parse_loads(args.loads)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    bandwidth = memory_bandwidth(args.bw_mb)
    peers_info: dict = {}
    rows = []
    for shape in args.shapes.split(","):
        k, n = (int(v) for v in shape.lower().split("x"))
        rows += bench_shape(k, n, args, bandwidth, peers_info)
    versions = {"torch": torch.__version__}
    for mod in ("torchao", "optimum.quanto"):
        try:
            versions[mod] = __import__(mod, fromlist=["_"]).__version__
        except Exception as exc:  # noqa: BLE001
            versions[mod] = f"not installed ({type(exc).__name__})"
    result = {
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "machine": {
            "threads": args.threads,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform(),
            "read_bandwidth_gb_s": bandwidth / 1e9,
            "versions": versions,
        },
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "peers": peers_info,
        "speedup_ranges": speedup_ranges(rows),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, result, indent=2)
    print_table(result)
    return result


if __name__ == "__main__":
    main()
