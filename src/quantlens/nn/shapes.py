"""The weight shapes a kernel path runs (:class:`Shapes`), shared by the weight-only
(:mod:`quantlens.nn.kernels.weight_only`) and dynamic (:mod:`quantlens.nn.kernels.dynamic`)
paths."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shapes:
    """The weight shapes ``(out_features, in_features)`` a kernel path runs: what the
    underlying torch op accepts without crashing or returning wrong numbers, for every
    number of tokens (tests/nn/test_kernel_shapes.py sweeps in_features 1-130 at 1-17
    tokens, and a 3-D input, over every path in a child process).

    Args:
        in_multiple: ``in_features`` must be a multiple of this.
        out_multiple: ``out_features`` must be a multiple of this.
        min_in: ``in_features`` must be at least this.

    Example:
        >>> Shapes(in_multiple=16).reason(32, 20)
        'it needs in_features that are a multiple of 16 (this layer has 20)'
    """

    in_multiple: int = 1
    out_multiple: int = 1
    min_in: int = 1

    def reason(self, out_features: int, in_features: int) -> str | None:
        """Why a ``(out_features, in_features)`` weight is outside these shapes, or None."""
        if in_features % self.in_multiple:
            return (
                f"it needs in_features that are a multiple of {self.in_multiple} (this "
                f"layer has {in_features})"
            )
        if in_features < self.min_in:
            return f"it needs in_features of at least {self.min_in} (this layer has {in_features})"
        if out_features % self.out_multiple:
            return (
                f"it needs out_features that are a multiple of {self.out_multiple} (this "
                f"layer has {out_features})"
            )
        return None
