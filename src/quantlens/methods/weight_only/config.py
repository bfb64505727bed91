"""The weight-only config: :class:`WeightOnly` and the scheme it gives each weight."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from quantlens.core.scheme import QScheme
from quantlens.errors import ConfigError, SchemeError
from quantlens.methods.base import QuantConfig
from quantlens.methods.group_size import DEFAULT_GROUP_SIZE, fit_group
from quantlens.methods.layer_kinds import normalize_modules
from quantlens.methods.weight_only.registry import ALGORITHMS, AlgorithmName

CodebookName = Literal["nf4", "log2", "kmeans"]


@dataclass(frozen=True)
class WeightOnly(QuantConfig):
    """Weight-only quantization: weights in ``bits`` bits, activations in float.

    Args:
        bits: code width, 1 to 8 (2, 3, 4 and 8 are the usual ones).
        group_size: elements per scale along the input dimension (per-group), None for one
            scale per output channel (per-channel), or ``"auto"`` (the default): per-channel
            at 8 bits, groups of 128 below. Any layer is quantized whatever its input size
            ``k`` (:func:`~quantlens.methods.group_size.fit_group`): if ``k < group_size``
            the layer gets one group per row (per-channel, the same thing); if
            ``group_size`` does not divide ``k``, the largest divisor of ``k`` between
            ``group_size / 2`` and ``group_size`` is used, and if there is none, one group
            per row. The layer's summary record says which
            group size it got and why.
        symmetric: a zero-point fixed at 0 (True) or fitted per group (False). Default:
            symmetric at 8 bits, asymmetric below (measured better on MiniLM at 4 bits).
        codebook: None for uniform levels, or ``"nf4"`` / ``"log2"`` / ``"kmeans"``.
        algorithm: ``"rtn"``, ``"hqq"``, ``"gptq"``, ``"awq"`` or ``"awq+gptq"`` (the last
            three need ``calib_data``); see the package docstring.
        modules: which layers to quantize: nn classes or their names, e.g.
            ``(nn.Linear, nn.Embedding)`` or ``("linear", "embedding")``; given, only those
            kinds (a model with none of them is refused). None (the default): the Linear
            layers, or, in a model without any Linear layer but with convolutions (a CNN
            whose classifier is a 1x1 conv, such as SqueezeNet), its Conv2d layers, which the
            summary says.
        lm_head: quantize the output head of a causal language model (``lm_head``, a
            Hugging Face ``*ForCausalLM``'s output embeddings, or a Linear tied to an
            Embedding) and an input embedding tied to it. False (the default, as in
            AutoGPTQ, AutoAWQ, llm-compressor and torchao): they stay float, which the summary
            says (:mod:`quantlens.methods.lm_head`); an ``overrides`` pattern naming the head
            quantizes it too. Models without such a head are not affected.
        sync: with ``algorithm="gptq"`` or AWQ under ``torch.distributed``, sum the Hessians
            (AWQ: the activation statistics) and sample counts over the ranks (each
            calibrates on its share); False keeps each rank's own. Nothing changes outside
            a process group.
        act_order: GPTQ only: quantize each weight's columns in order of decreasing input
            energy (``diag(H)``); on by default (it lowers the error where a few inputs
            dominate, as in LLMs).
        static_groups: GPTQ only: fit the group scales on the original weight, before
            act-order permutes the columns, so groups keep their plain layout; None (the
            default) follows ``act_order``. ``act_order=True`` needs it.
        true_sequential: GPTQ only: quantize the layers in the order the model runs them,
            each collecting its Hessian from the outputs of the layers already quantized
            before it (:mod:`.sequential`), instead of every Hessian from the float model in
            one pass. Slower (a few block passes per layer group).
        skip, overrides: see :class:`~quantlens.methods.base.QuantConfig`.

    Example:
        >>> qm = ql.quantize(model, WeightOnly(bits=4, group_size=64, algorithm="hqq",
        ...                  overrides={"*.attention.*": WeightOnly(bits=8, group_size=None)}))
    """

    bits: int = 4
    group_size: int | Literal["auto"] | None = "auto"
    symmetric: bool | None = None
    codebook: CodebookName | None = None
    algorithm: AlgorithmName = "rtn"
    modules: tuple[str, ...] | None = None
    sync: bool = True
    act_order: bool = True
    static_groups: bool | None = None
    true_sequential: bool = False
    lm_head: bool = False

    #: A config dict without ``lm_head`` (a checkpoint saved before the field existed)
    #: quantized the head with the other Linear layers; loading it rebuilds that structure.
    MISSING_FIELD_VALUES: ClassVar[dict[str, Any]] = {"lm_head": True}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.static_groups is None:
            object.__setattr__(self, "static_groups", bool(self.act_order))
        gptq_options = (self.act_order, self.static_groups, self.true_sequential)
        if self.algorithm not in ("gptq", "awq+gptq") and gptq_options != (True, True, False):
            raise ConfigError(
                "act_order, static_groups and true_sequential are GPTQ options; "
                "use algorithm='gptq' (or 'awq+gptq') or leave them at their defaults"
            )
        if self.act_order and not self.static_groups:
            raise ConfigError(
                "act_order=True needs static_groups=True (groups keep their plain column "
                "layout); pass static_groups=True or act_order=False"
            )
        if self.symmetric is None:
            object.__setattr__(self, "symmetric", isinstance(self.bits, int) and self.bits >= 8)
        if self.group_size == "auto":
            eight = isinstance(self.bits, int) and self.bits >= 8
            object.__setattr__(self, "group_size", None if eight else DEFAULT_GROUP_SIZE)
        if self.group_size is not None and (
            isinstance(self.group_size, bool)
            or not isinstance(self.group_size, int)
            or self.group_size < 1
        ):
            raise ConfigError(
                f"group_size must be a positive integer, None (per-channel) or 'auto', "
                f"got {self.group_size!r}"
            )
        if self.modules is not None:
            object.__setattr__(self, "modules", normalize_modules(self.modules))
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(
                f"unknown algorithm {self.algorithm!r}; valid: {', '.join(sorted(ALGORITHMS))}"
            )
        if self.codebook is not None and not ALGORITHMS[self.algorithm].codebooks:
            raise ConfigError(
                f"algorithm={self.algorithm!r} fits uniform grids; "
                "use codebook=None or algorithm='rtn'"
            )
        try:
            self.scheme_for((1, self.group_size or 1))
        except SchemeError as exc:
            raise ConfigError(
                f"WeightOnly(bits={self.bits}, ...) is not a valid scheme: {exc}"
            ) from exc

    @property
    def resolved_group_size(self) -> int | None:
        """The group size once ``"auto"`` is resolved (None: one scale per output channel)."""
        return self.group_size if isinstance(self.group_size, int) else None

    def scheme_for(self, shape: tuple[int, ...] | torch.Size) -> QScheme:
        """The :class:`QScheme` of a weight of ``shape``: per-channel along the first axis
        (output channels / embedding rows), or per-group along the input axis (the last one
        of a Linear or Embedding weight, axis 1 (input channels) of a 4-D conv weight),
        with the group size :func:`fit_group` gives for that axis.

        Example:
            >>> WeightOnly(bits=4, group_size=64).scheme_for((384, 384)).describe()
            'uint4 asym per_group(64)'
            >>> WeightOnly(bits=4, group_size=128).scheme_for((32, 20)).describe()
            'uint4 asym per_channel(axis=0)'
        """
        axis = 1 if len(shape) > 2 else -1
        size = self.resolved_group_size
        group = None if size is None else fit_group(int(shape[axis]), size)
        if group is None:
            return QScheme(
                bits=self.bits,
                symmetric=bool(self.symmetric),
                granularity="per_channel",
                axis=0,
                codebook=self.codebook,
            )
        return QScheme(
            bits=self.bits,
            symmetric=bool(self.symmetric),
            granularity="per_group",
            axis=axis,
            group_size=group,
            codebook=self.codebook,
        )
