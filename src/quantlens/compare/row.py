"""One row of a comparison: the measurements of one model (the float baseline or one
method) in one runtime, and how a runtime's row is named.

Example:
    >>> Row("w8", "weight_only", accuracy=99.1).quality
    99.1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from quantlens.compare.settings import Runtime

Status = Literal["ok", "failed"]

# Row fields only a causal LM has: left out of ``to_dict`` when None, so the results of other
# tasks read and write as before
LM_FIELDS = (
    "perplexity",
    "perplexity_tokens",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "time_to_first_token_ms",
)


@dataclass
class Row:
    """The measurements of one model (the float baseline or one method).

    Sizes are bytes, times milliseconds, accuracy/agreement percent. ``None`` means not
    measured (the reason is in ``notes`` or ``error``). ``peak_memory_bytes`` is the peak
    resident memory of inference above the loaded model, ``model_memory_bytes`` the resident
    memory of the loaded model (both from a child process, see :mod:`quantlens.eval.memory`).

    ``runtime`` is where the model ran: ``"torch"``, or ``"onnxruntime"`` for the row of a
    model exported to ONNX (named ``"static (onnxruntime)"`` after its PyTorch row
    ``"static"``, see :func:`runtime_row_name`; its ``disk_bytes`` are the ``.onnx`` file's).
    ``to_dict`` writes it only when it is not ``"torch"``, so files written before it existed
    and files of PyTorch-only runs read the same.

    A causal LM (``settings.task == "causal-lm"``) has ``perplexity`` over the evaluation
    stream (``perplexity_tokens`` tokens scored), ``prefill_tokens_per_s``,
    ``decode_tokens_per_s`` and ``time_to_first_token_ms`` at batch 1
    (:mod:`quantlens.eval.generation`); its ``peak_memory_bytes`` is the rise of resident
    memory during one generation, and it has no batch latency or accuracy.
    """

    name: str
    method: str
    config: dict | None = None
    status: Status = "ok"
    error: str | None = None
    disk_bytes: int | None = None
    memory_bytes: int | None = None
    num_parameters: int | None = None
    latency_ms: float | None = None
    latency_p95_ms: float | None = None
    items_per_s: float | None = None
    batch_size: int | None = None
    threads: int | None = None
    peak_memory_bytes: int | None = None
    model_memory_bytes: int | None = None
    accuracy: float | None = None
    metric: float | None = None
    agreement: float | None = None
    sqnr_db: float | None = None
    cosine: float | None = None
    quantize_s: float | None = None
    layers_quantized: int | None = None
    layers_float: int | None = None
    float_kinds: dict[str, int] | None = None  # layer kind -> how many stayed float
    notes: list[str] = field(default_factory=list)
    runtime: Runtime = "torch"
    perplexity: float | None = None
    perplexity_tokens: int | None = None
    prefill_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None
    time_to_first_token_ms: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the row was measured (``status == "ok"``)."""
        return self.status == "ok"

    @property
    def quality(self) -> float | None:
        """The number rows are ranked on: accuracy (or embedding similarity) %, else the
        user metric, else agreement with float %."""
        for value in (self.accuracy, self.metric, self.agreement):
            if value is not None:
                return value
        return None

    @property
    def source_name(self) -> str:
        """The name of the PyTorch row this row was exported from (its own name for a
        PyTorch row): ``"static"`` for ``"static (onnxruntime)"``."""
        return self.name.removesuffix(runtime_row_name("", self.runtime))

    def to_dict(self) -> dict:
        """The row as a dict (``runtime`` only when not torch, the language-model fields only
        where measured)."""
        out = dataclasses.asdict(self)
        if self.runtime == "torch":
            del out["runtime"]
        for name in LM_FIELDS:
            if out[name] is None:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> Row:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def runtime_row_name(name: str, runtime: str) -> str:
    """The name of the row measuring row ``name``'s model in ``runtime``.

    Example:
        >>> runtime_row_name("static", "onnxruntime"), runtime_row_name("static", "torch")
        ('static (onnxruntime)', 'static')
    """
    return name if runtime == "torch" else f"{name} ({runtime})"
