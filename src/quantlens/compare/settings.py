"""What a comparison is asked to do, as a few small settings objects.

- :class:`DataSettings`: which data (evaluation, calibration, QAT training) and inputs;
- :class:`Timing`: how latency is timed (repetitions, warm-up, threads);
- :class:`Measure`: what is measured besides size, latency and quality (peak memory,
  per-layer error, the sensitivity analysis) and with which metric; for a causal language
  model, the perplexity windows and the generation timed;
- :class:`Budget`: what the recommendation may lose and what it minimises;
- :class:`Hooks`: how the run talks to its caller (progress bars, callbacks, the command
  line it records).

``ql.compare`` takes them as objects or as the flat keyword arguments they are made of
(``reps=5`` is ``timing=Timing(reps=5)``); :func:`split_options` does the mapping.

Example:
    >>> report = ql.compare(model, ["static"], data=DataSettings(test, calib_data=calib),
    ...                     timing=Timing(reps=5), measure=Measure(memory=False))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, get_args

from quantlens.errors import InputError, check_number
from quantlens.eval.latency import DEFAULT_REPS, DEFAULT_WARMUP

if TYPE_CHECKING:
    from torch import nn

    from quantlens.core.data import Batch
    from quantlens.eval.memory import ModelRef

Objective = Literal["latency", "size"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
Runtime = Literal["torch", "onnxruntime"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)


@dataclass(frozen=True)
class DataSettings:
    """The data a comparison runs on.

    Attributes:
        data: evaluation data in any form ``iter_batches`` accepts; labels give accuracy;
            its first batch is timed.
        calib_data: calibration data (Static); None: the evaluation data (noted in the report).
        train_data: labelled data QAT configs fine-tune on.
        qat_epochs: epochs of that fine-tuning.
        example_inputs: inputs for tracing and timing (default: the first batch of ``data``).
        float_note: what the float reference is, shown wherever figures are (e.g. SmolLM2's
            "the float reference is the dequantized Q4_1 model").

    Example:
        >>> DataSettings(test, calib_data=calib, train_data=train, qat_epochs=2)
    """

    data: Any
    calib_data: Any = None
    train_data: Any = None
    qat_epochs: int = 1
    example_inputs: tuple | None = None
    float_note: str | None = None

    def __post_init__(self) -> None:
        check_number("qat_epochs", self.qat_epochs, 1, integer=True)


@dataclass(frozen=True)
class Timing:
    """How latency is timed (:func:`quantlens.eval.latency.measure_latency`).

    Attributes:
        reps: timed calls per model; warmup: untimed calls first.
        threads: torch threads for the timings (None: the current setting).

    Example:
        >>> Timing(reps=50, warmup=5, threads=1)
    """

    reps: int = DEFAULT_REPS
    warmup: int = DEFAULT_WARMUP
    threads: int | None = None

    def __post_init__(self) -> None:
        check_number("reps", self.reps, 1, integer=True)
        check_number("warmup", self.warmup, 0, integer=True)
        check_number("threads", self.threads, 1, integer=True)


@dataclass(frozen=True)
class Measure:
    """What a comparison measures besides size, latency and quality.

    Attributes:
        metric: ``metric(outputs, labels) -> float`` for tasks other than classification.
        memory: peak memory of inference, in a child process per model.
        layer_errors: each method's per-layer error (the ``layer_error.png`` plot).
        analysis: explain the recommended method (else the one closest to the budget): its
            per-layer sensitivity, its layer-by-layer error and, for methods that quantize
            activations, the activation ranges (:mod:`quantlens.compare.analysis`).
        analysis_batches: batches of the data the sensitivity run uses (None: all).
        float_ref: how a child process rebuilds the float model when it records no source
            (for ``memory``).
        runtimes: where each model is run: ``"torch"`` (always, first) and
            ``"onnxruntime"`` (each model also exported to ONNX and measured in ONNX Runtime,
            a second row after its PyTorch row; needs ``quantlens[onnx]``). A
            comma-separated string is split.
        causal_lm: the language-model task (perplexity and generation speed instead of
            accuracy and batch latency): None detects it (a ``*ForCausalLM`` model, or one
            with ``generate``, on one token stream), True forces it, False turns it off.
        ppl_window, ppl_stride: tokens per perplexity window and between window starts
            (None: ``ppl_window``, disjoint windows; :mod:`quantlens.eval.perplexity`).
        ppl_tokens: the first this many tokens of the stream are scored (None: all of it).
        prompt_tokens: the generation prompt: the first this many tokens of the stream.
        new_tokens: decode steps per timed generation, at batch 1.
        generation_reps: timed generations per model (median; one untimed first).

    Example:
        >>> Measure(memory=False, analysis=True)
        >>> Measure(runtimes=("torch", "onnxruntime")).runtimes
        ('torch', 'onnxruntime')
        >>> Measure(ppl_window=256, ppl_tokens=1024, new_tokens=16)  # a causal LM, quickly
    """

    metric: Callable | None = None
    memory: bool = True
    layer_errors: bool = True
    analysis: bool = False
    analysis_batches: int | None = 4
    float_ref: ModelRef | None = None
    runtimes: tuple[Runtime, ...] = ("torch",)

    causal_lm: bool | None = None
    ppl_window: int = 512
    ppl_stride: int | None = None
    ppl_tokens: int | None = 4096
    prompt_tokens: int = 32
    new_tokens: int = 32
    generation_reps: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "runtimes", check_runtimes(self.runtimes))
        check_number("ppl_window", self.ppl_window, 2, integer=True)
        check_number("ppl_stride", self.ppl_stride, 1, self.ppl_window, integer=True)
        check_number("ppl_tokens", self.ppl_tokens, 2, integer=True)
        check_number("prompt_tokens", self.prompt_tokens, 1, integer=True)
        check_number("new_tokens", self.new_tokens, 1, integer=True)
        check_number("generation_reps", self.generation_reps, 1, integer=True)


def check_runtimes(runtimes: Any) -> tuple[Runtime, ...]:
    """``runtimes`` as a tuple without repeats (a string is split at commas); InputError
    for an unknown runtime or a list without ``"torch"`` (the rows the others sit beside).

    Example:
        >>> check_runtimes("torch, onnxruntime")
        ('torch', 'onnxruntime')
    """
    if isinstance(runtimes, str):
        runtimes = [r.strip() for r in runtimes.split(",") if r.strip()]
    names = tuple(dict.fromkeys(runtimes or ()))
    unknown = [str(r) for r in names if r not in RUNTIMES]
    if unknown:
        raise InputError(
            f"unknown runtime {unknown[0]!r}; choose from {', '.join(RUNTIMES)} "
            "(e.g. torch,onnxruntime)"
        )
    if "torch" not in names:
        raise InputError(
            f"runtimes {', '.join(names) or '(none)'} leave out torch; give torch first, "
            "e.g. torch,onnxruntime (the PyTorch rows are the ones exported)"
        )
    return ("torch", *(r for r in names if r != "torch"))  # type: ignore[return-value]


@dataclass(frozen=True)
class Budget:
    """What :meth:`~quantlens.compare.Comparison.best` and the recommendation use.

    Attributes:
        max_accuracy_drop: accuracy (or agreement) points the recommendation may lose vs float.
        objective: ``"latency"`` (lowest median; a causal LM: most decode tokens/s) or
            ``"size"`` (smallest checkpoint).
        max_perplexity_increase: for a causal LM, the perplexity increase vs float (percent)
            the recommendation may cost.

    Example:
        >>> Budget(max_accuracy_drop=0.5, objective="size")
        >>> Budget(max_perplexity_increase=5)  # a causal LM: at most 5% above float
    """

    max_accuracy_drop: float = 1.0
    objective: Objective = "latency"
    max_perplexity_increase: float = 5.0

    def __post_init__(self) -> None:
        check_number("max_accuracy_drop", self.max_accuracy_drop, 0, 100)
        check_number("max_perplexity_increase", self.max_perplexity_increase, 0)
        check_objective(self.objective)


def check_objective(objective: str) -> None:
    """Raise InputError unless ``objective`` is one of :data:`OBJECTIVES`."""
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


@dataclass(frozen=True)
class Hooks:
    """How the run reports to its caller.

    Attributes:
        progress: progress bars (None: when stderr is a terminal).
        command: the command line recorded in the results.
        on_start: called ``(name, index, total)`` before each model.
        on_row: called ``(row, comparison)`` after each row (to save results incrementally).
        on_model: called ``(row, quantized_model, batch)`` for each measured quantized model
            (per-layer diagnostics); its errors are the caller's to handle.

    Example:
        >>> Hooks(on_start=lambda name, i, n: print(f"[{i}/{n}] {name}"))
    """

    progress: bool | None = None
    command: str | None = None
    on_start: Callable[[str, int, int], None] | None = None
    on_row: Callable[[Any, Any], None] | None = None
    on_model: Callable[[Any, nn.Module, Batch], None] | None = None


class CompareOptions(TypedDict, total=False):
    """The flat keyword arguments ``ql.compare`` and ``run_comparison`` accept, each a field
    of one settings object (see :func:`split_options`)."""

    calib_data: Any
    train_data: Any
    qat_epochs: int
    example_inputs: tuple | None
    float_note: str | None
    reps: int
    warmup: int
    threads: int | None
    metric: Callable | None
    memory: bool
    layer_errors: bool
    analysis: bool
    analysis_batches: int | None
    float_ref: ModelRef | None
    runtimes: tuple[Runtime, ...] | str
    causal_lm: bool | None
    ppl_window: int
    ppl_stride: int | None
    ppl_tokens: int | None
    prompt_tokens: int
    new_tokens: int
    generation_reps: int
    max_accuracy_drop: float
    objective: Objective
    max_perplexity_increase: float
    progress: bool | None
    command: str | None
    on_start: Callable[[str, int, int], None] | None
    on_row: Callable[[Any, Any], None] | None
    on_model: Callable[[Any, nn.Module, Batch], None] | None


S = TypeVar("S", DataSettings, Timing, Measure, Budget, Hooks)


def from_options(cls: type[S], given: S | None, options: dict[str, Any], **fixed: Any) -> S:
    """``given``, or a ``cls`` built from the entries of ``options`` named like its fields
    (removed from ``options``); both at once raise InputError.

    Args:
        cls: a settings class.
        given: the settings object the caller passed, if any.
        options: flat keyword arguments; the ones ``cls`` owns are taken out.
        fixed: fields set by the caller of this function (e.g. ``data``).

    Returns:
        The settings object.

    Example:
        >>> options = {"reps": 5, "memory": False}
        >>> from_options(Timing, None, options), options
        (Timing(reps=5, warmup=3, threads=None), {'memory': False})
    """
    names = [f.name for f in dataclasses.fields(cls) if f.name not in fixed]
    taken = {n: options.pop(n) for n in names if n in options}
    if given is None:
        return cls(**fixed, **taken)
    if taken:
        raise InputError(
            f"{', '.join(taken)} given both as keyword(s) and in {cls.__name__}; give each once"
        )
    if not isinstance(given, cls):
        raise InputError(f"expected a {cls.__name__}, got {type(given).__name__}")
    return given


def check_no_options_left(function: str, options: dict[str, Any]) -> None:
    """Raise TypeError for keyword arguments no settings object has (as Python would)."""
    if options:
        raise TypeError(f"{function}() got an unexpected keyword argument {next(iter(options))!r}")


def settings_from(
    data: Any, given: dict[str, Any], options: dict[str, Any], function: str
) -> tuple[DataSettings, Timing, Measure, Hooks]:
    """The run's settings objects from what ``function`` was called with.

    Args:
        data: the evaluation data, or a :class:`DataSettings`.
        given: the settings objects passed (``{"timing": Timing(...) or None, "measure": ...,
            "hooks": ...}``).
        options: the flat keyword arguments (:class:`CompareOptions`); consumed.
        function: the caller's name, for the error on an unknown keyword.

    Returns:
        ``(data, timing, measure, hooks)``.

    Raises:
        TypeError: a keyword no settings object has; InputError: a setting given twice or
            out of range.
    """
    if isinstance(data, DataSettings):
        data_settings = from_options(DataSettings, data, options)
    else:
        data_settings = from_options(DataSettings, None, options, data=data)
    timing = from_options(Timing, given.get("timing"), options)
    measure = from_options(Measure, given.get("measure"), options)
    hooks = from_options(Hooks, given.get("hooks"), options)
    check_no_options_left(function, options)
    return data_settings, timing, measure, hooks


__all__ = [
    "OBJECTIVES",
    "RUNTIMES",
    "Budget",
    "CompareOptions",
    "DataSettings",
    "Hooks",
    "Measure",
    "Objective",
    "Runtime",
    "Timing",
    "check_no_options_left",
    "check_objective",
    "check_runtimes",
    "from_options",
    "settings_from",
]
