"""Measuring: size, latency, peak memory and quality of a model, and the comparison run.

Each measurement works on its own:

- :func:`measure_size` (checkpoint bytes on disk, weight bytes in memory);
- :func:`measure_latency` (warm-up, repetitions, median / p95, items/s, threads);
- :func:`measure_peak_memory` (peak resident memory of inference, in a child process);
- :func:`collect_outputs` + :func:`measure_quality` (accuracy, agreement, SQNR, cosine);
- :func:`measure_perplexity` (a causal LM over a token stream, sliding windows);
- :func:`measure_generation` (prefill and decode tokens/s at batch 1, time to first token,
  peak memory of generation).

:mod:`quantlens.compare` runs them all over float and a set of configs.
"""

from quantlens.eval.generation import GenerationResult, measure_generation
from quantlens.eval.latency import LatencyResult, measure_latency
from quantlens.eval.memory import MemoryResult, ModelRef, measure_peak_memory
from quantlens.eval.perplexity import PerplexityResult, measure_perplexity
from quantlens.eval.quality import Outputs, QualityResult, collect_outputs, measure_quality
from quantlens.eval.size import SizeResult, measure_size

__all__ = [
    "GenerationResult",
    "LatencyResult",
    "MemoryResult",
    "ModelRef",
    "Outputs",
    "PerplexityResult",
    "QualityResult",
    "SizeResult",
    "collect_outputs",
    "measure_generation",
    "measure_latency",
    "measure_peak_memory",
    "measure_perplexity",
    "measure_quality",
    "measure_size",
]
