"""Peak resident memory of inference, measured in a fresh child process per model.

Measuring in the process that built the models would be fooled by everything it already
holds (the float model, other quantized copies, freed memory the allocator keeps), so each
model runs in its own child process, forked from a small server process that imported
torch and quantlens once and ran nothing (:mod:`quantlens.eval._memory_server`; POSIX only).
The child

1. loads the model once and drops it, so the lazy imports and caches loading triggers
   (torch.fx, transformers modules, ...) are not counted as the model's memory, then records
   its resident set size (RSS): the *baseline*;
2. loads the model again (``ql.load`` of a saved checkpoint, a float state dict plus how to
   rebuild the model, or a ``module:factory`` spec) and the input batch, and runs one
   warm-up call (memory-mapped weights are paged in, kernels set up): RSS *with the model*;
3. resets the kernel's peak-RSS counter (``/proc/self/clear_refs``), so the transient peak
   of loading is not counted, and runs the batch through the model ``reps`` times;
4. reads the peak RSS (``VmHWM``).

Reported: ``inference_bytes`` = peak RSS during inference minus RSS with the model loaded
(activations and workspace: the figure ``ql.compare`` reports as peak inference memory),
``model_bytes`` = RSS with the model minus the baseline (resident weights and what the
first call keeps, e.g. packed kernels' caches),
``peak_bytes`` = their sum (peak RSS during inference minus the baseline).
Where the peak counter cannot be reset (not Linux), ``ru_maxrss`` is used and the peak
includes loading; ``method`` says which. Allocator granularity makes figures under ~1 MB
noise: compare models of a few MB or more.

Example:
    >>> ql.save(qm, "ckpt/")
    >>> m = measure_peak_memory(ModelRef.checkpoint("ckpt/"), test_inputs)
    >>> m.inference_mb, m.model_bytes
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import torch

from quantlens.core.data import Batch
from quantlens.errors import InputError, QuantizationFailedError
from quantlens.sources import resolve_model

CHILD_TIMEOUT_S = 300.0
_PROC_STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class ModelRef:
    """How a child process gets the model: ``kind`` is ``"checkpoint"`` (a ``ql.save``
    directory), ``"float"`` (a directory from :func:`quantlens.eval.size.save_for_size`
    with ``source.json``) or ``"factory"`` (``"module:function"``, called with no arguments:
    the caller named it, so it runs).

    ``trust_code`` is what :func:`quantlens.load`'s is: a checkpoint or float directory whose
    source is a ``module:function`` factory is rebuilt by calling it only when True. ``ql.compare``
    sets it for the directories it writes itself from the caller's models (their sources came
    from the caller, never from an untrusted file: ``ql.load`` drops a factory it was not
    allowed to call).

    Example:
        >>> measure_peak_memory(ModelRef.checkpoint("ckpt/"), x)                   # HF / zoo source
        >>> measure_peak_memory(ModelRef.checkpoint("ckpt/", trust_code=True), x)  # a factory
    """

    kind: str
    target: str
    trust_code: bool = False

    @classmethod
    def checkpoint(cls, path, *, trust_code: bool = False) -> ModelRef:
        return cls(
            "checkpoint", str(Path(path).resolve()), trust_code
        )  # the child may run elsewhere

    @classmethod
    def float_dir(cls, path, *, trust_code: bool = False) -> ModelRef:
        return cls("float", str(Path(path).resolve()), trust_code)

    @classmethod
    def factory(cls, spec: str) -> ModelRef:
        return cls("factory", spec)


@dataclass(frozen=True)
class MemoryResult:
    """Resident memory of one model's inference (bytes; see the module docstring)."""

    peak_bytes: int
    model_bytes: int
    inference_bytes: int
    baseline_bytes: int
    method: str  # "VmHWM" | "ru_maxrss"

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 1e6

    @property
    def inference_mb(self) -> float:
        return self.inference_bytes / 1e6


# --- the child ------------------------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # "5": reset the peak RSS counter
        return True
    except OSError:
        return False


def _peak_bytes() -> tuple[int, str]:
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024, "VmHWM"
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "ru_maxrss"


def _release_freed() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS drops."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _load_model(ref: dict) -> torch.nn.Module:
    """The model a :class:`ModelRef` (as the job carries it) points to, built through
    :func:`quantlens.sources.resolve_model` with the form its kind names."""
    if ref["kind"] not in ("checkpoint", "float", "factory"):
        raise InputError(f"unknown model reference kind {ref['kind']!r}")
    trust = ref.get("trust_code") is True or ref["kind"] == "factory"  # the caller named it
    return resolve_model(ref["target"], trust_code=trust, kind=ref["kind"]).model


def _load_batch(path: str) -> Batch:
    from safetensors.torch import load_file

    tensors = load_file(path)
    args = tuple(tensors[f"arg{i}"] for i in range(sum(k.startswith("arg") for k in tensors)))
    kwargs = {k[3:]: v for k, v in tensors.items() if k.startswith("kw.")}
    return Batch(args, kwargs)


def measure_in_this_process(job: dict) -> dict:
    """The child's side: load, reset the peak counter, run, read the peak (a dict of ints)."""
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    _load_model(job["ref"])  # a first load pays for lazy imports and caches ...
    _release_freed()
    baseline = _rss_bytes()  # ... so the baseline holds them and the second load is the model
    model = _load_model(job["ref"])
    batch = _load_batch(job["inputs"])
    with torch.inference_mode():
        batch.run(model)  # one warm-up call: pages lazily mapped weights in, sets up kernels
    _release_freed()
    loaded = _rss_bytes()
    reset = _reset_peak()
    with torch.inference_mode():
        for _ in range(max(1, job.get("reps", 1))):
            batch.run(model)
    peak, method = _peak_bytes()
    return {
        "ok": True,
        "baseline": baseline,
        "loaded": loaded,
        "peak": peak,
        "method": method if reset else "ru_maxrss",
    }


# --- the parent -----------------------------------------------------------------------------


class _Server:
    """A clean process with torch and quantlens imported that forks one child per job.

    (multiprocessing's forkserver would re-import the caller's ``__main__`` script in every
    child; this one runs only :mod:`quantlens.eval._memory_server`.)
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quantlens.eval._memory_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        # stdin/stdout=PIPE: both streams exist
        self._to_child = cast(IO[str], self.proc.stdin)
        self._from_child = cast(IO[str], self.proc.stdout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, job: dict, timeout: float) -> dict:
        import selectors

        self._to_child.write(json.dumps(job) + "\n")
        self._to_child.flush()
        with selectors.DefaultSelector() as sel:
            sel.register(self._from_child, selectors.EVENT_READ)
            if not sel.select(timeout):
                self.close()
                raise QuantizationFailedError(f"memory measurement timed out after {timeout:.0f} s")
        line = self._from_child.readline()
        if not line:
            self.close()
            raise QuantizationFailedError("the memory-measuring process died")
        return json.loads(line)

    def close(self) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


_server: _Server | None = None  # started on first use, stopped at exit


def _get_server() -> _Server:
    global _server
    if _server is None or not _server.alive():
        _server = _Server()
        atexit.register(_server.close)
    return _server


def save_batch(batch: Batch, path: str | os.PathLike) -> None:
    """Write a batch's tensors to a safetensors file the child reads (no pickle)."""
    from safetensors.torch import save_file

    tensors = {f"arg{i}": a.contiguous() for i, a in enumerate(batch.args)}
    tensors.update({f"kw.{k}": v.contiguous() for k, v in batch.kwargs.items()})
    if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise InputError("memory measurement needs inputs that are tensors")
    save_file(tensors, str(path))


def measure_peak_memory(
    ref: ModelRef,
    inputs,
    *,
    reps: int = 3,
    threads: int | None = None,
    timeout: float = CHILD_TIMEOUT_S,
) -> MemoryResult:
    """Peak resident memory of running ``inputs`` through the model ``ref`` points to.

    Args:
        ref: where the child gets the model (see :class:`ModelRef`).
        inputs: a tensor, tuple of tensors, :class:`Batch` or data (its first batch).
        reps: inference calls in the child.
        threads: intra-op threads in the child.
        timeout: seconds before the child is stopped.

    Returns:
        A :class:`MemoryResult`.

    Raises:
        QuantizationFailedError: the child failed (the message carries its error) or timed out.
    """
    from quantlens.eval.latency import as_batch

    batch = as_batch(inputs)
    batch = Batch(batch.args, batch.kwargs)
    with tempfile.TemporaryDirectory(prefix="quantlens-mem-") as tmp:
        inputs_path = os.path.join(tmp, "inputs.safetensors")
        save_batch(batch, inputs_path)
        job = {
            "ref": {"kind": ref.kind, "target": ref.target, "trust_code": ref.trust_code},
            "inputs": inputs_path,
            "reps": reps,
            "threads": threads,
        }
        try:
            result = _get_server().request(job, timeout)
        except KeyboardInterrupt:
            if _server is not None:
                _server.close()
            raise
    if not result["ok"]:
        raise QuantizationFailedError(
            f"memory measurement failed in the child process: {result['error']}"
        )
    base, loaded, peak = result["baseline"], result["loaded"], result["peak"]
    return MemoryResult(
        peak_bytes=max(peak - base, 0),
        model_bytes=max(loaded - base, 0),
        inference_bytes=max(peak - loaded, 0),
        baseline_bytes=base,
        method=result["method"],
    )
