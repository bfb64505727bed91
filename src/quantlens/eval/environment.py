"""What this machine can do for quantization: the facts ``quantlens doctor`` prints and every
report embeds.

:func:`environment_info` returns a JSON-ready dict: versions, threads, CPU features that
matter for int8/bf16 kernels, CUDA, PyTorch's quantized engines (supported, active, and
whether each one actually runs a tiny quantized linear and conv correctly), whether the
compiled int8 kernel is built and loads, and which optional extras are installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

from quantlens.errors import error_line
from quantlens.methods.backends import torch_ao
from quantlens.nn.kernels.compiled import BUILD_COMMAND, default_ops

# CPU flags (from /proc/cpuinfo) that decide which int8 / bf16 kernels run fast.
X86_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
ARM_FEATURES = ("asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")

# module to import -> distribution name (for its version) and the quantlens extra providing it
EXTRAS = {
    "transformers": ("transformers", "hf"),
    "matplotlib": ("matplotlib", "plot"),
    "sklearn": ("scikit-learn", "data"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "torchao": ("torchao", "torchao"),
    "optimum.quanto": ("optimum-quanto", "quanto"),
    "torchvision": ("torchvision", "vision"),
}


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """CPU model, logical core count and the features that matter, from ``/proc/cpuinfo``
    (empty features where that file does not exist, e.g. macOS or Windows).

    Example:
        >>> sorted(cpu_info()["features"])[:2]  # doctest: +SKIP
        ['amx_bf16', 'amx_int8']
    """
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key in ("model name", "cpu model") and value.strip():
            model = value.strip()
    names = ARM_FEATURES if platform.machine().lower() in ("aarch64", "arm64") else X86_FEATURES
    capability = getattr(
        getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "unknown"
    )()
    return {
        "model": model,
        "logical_cores": os.cpu_count(),
        "features": {name: name in flags for name in names},
        "torch_cpu_capability": capability,
    }


def _tiny_quantized_ops() -> str:
    """Run a quantized linear, conv and dynamic linear under the active engine; compare each
    to float. Returns a short summary or raises."""
    errors = torch_ao.quantized_op_errors()  # in output quantization steps
    worst = max(errors.values())
    if worst > 3:  # more than a few output steps off: the engine runs but computes garbage
        found = ", ".join(f"{name} {steps:.3g}" for name, steps in errors.items())
        raise RuntimeError(f"wrong results (errors in output steps: {found})")
    return f"linear, conv2d and dynamic linear agree with float (max {worst:.2f} output steps)"


def engine_info(*, check: bool = True) -> dict:
    """PyTorch's quantized engines: supported here, active, and (with ``check``) whether each
    runs a tiny quantized linear / conv / dynamic linear correctly.

    The active engine is restored afterwards.
    """
    quantized = torch.backends.quantized
    supported = [e for e in quantized.supported_engines if e != "none"]
    active = quantized.engine
    works: dict[str, dict] = {}
    if check:
        try:
            for engine in supported:
                start = time.perf_counter()
                try:
                    quantized.engine = engine
                    with warnings.catch_warnings():  # torch deprecates quantized tensors
                        warnings.simplefilter("ignore")
                        detail = _tiny_quantized_ops()
                    works[engine] = {"ok": True, "detail": detail}
                except Exception as exc:  # noqa: BLE001 - any failure means "does not work here"
                    works[engine] = {
                        "ok": False,
                        "detail": f"{type(exc).__name__}: {error_line(exc, 200)}",
                    }
                works[engine]["seconds"] = round(time.perf_counter() - start, 4)
        finally:
            quantized.engine = active
    return {"supported": supported, "active": active, "works": works}


def extras_info(*, import_check: bool = False) -> dict:
    """Optional dependencies: installed, version and (with ``import_check``) whether they
    import. Importing is off by default: some take many seconds to import."""
    out = {}
    for module, (dist, extra) in EXTRAS.items():
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = None
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        entry = {
            "installed": bool(found and version),
            "version": version,
            "extra": extra,
            "imports": None,
        }
        if import_check and entry["installed"]:
            try:
                importlib.import_module(module)
                entry["imports"] = True
            except Exception as exc:  # noqa: BLE001 - a broken install is what we report
                entry["imports"] = False
                entry["error"] = f"{type(exc).__name__}: {error_line(exc, 200)}"
        out[module] = entry
    return out


def cuda_info() -> dict:
    """CUDA availability, its version and the visible devices."""
    available = torch.cuda.is_available()
    devices = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if available
        else []
    )
    return {"available": available, "version": torch.version.cuda, "devices": devices}


def compiled_kernel_info() -> dict:
    """Whether the compiled dynamic int8 kernel is built for this torch and CPU and loads.

    Returns:
        ``{"built", "loaded", "library", "detail"}``; ``detail`` says why not, and how to
        build it, when it is not loaded.

    Example:
        >>> compiled_kernel_info()["library"].startswith("dynamic_int8-torch")
        True
    """
    ops = default_ops()
    built = ops.path.is_file()
    loaded = built and ops.load()  # loads only a built library: no notice logged here
    detail = "loaded" if loaded else f"{ops.reason or 'not built'}; build it: {BUILD_COMMAND}"
    return {"built": built, "loaded": loaded, "library": ops.path.name, "detail": detail}


def environment_info(*, check_engines: bool = True, import_extras: bool = False) -> dict:
    """Everything about this machine that decides what quantization can do here.

    Args:
        check_engines: run a tiny quantized op under each engine (about 0.1 s).
        import_extras: actually import each optional dependency (can take many seconds).

    Returns:
        A JSON-ready dict with keys ``quantlens``, ``python``, ``platform``, ``torch``,
        ``threads``, ``cpu``, ``cuda``, ``engines``, ``compiled_kernel`` and ``extras``.

    Example:
        >>> info = environment_info(check_engines=False)
        >>> info["engines"]["active"] in info["engines"]["supported"]
        True
    """
    try:
        version = importlib.metadata.version("quantlens")
    except importlib.metadata.PackageNotFoundError:
        version = None
    mps = getattr(torch.backends, "mps", None)
    return {
        "quantlens": version,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": {
            "intra_op": torch.get_num_threads(),
            "inter_op": torch.get_num_interop_threads(),
        },
        "cpu": cpu_info(),
        "cuda": cuda_info(),
        "mps": bool(mps and mps.is_available()),
        "engines": engine_info(check=check_engines),
        "compiled_kernel": compiled_kernel_info(),
        "extras": extras_info(import_check=import_extras),
    }
