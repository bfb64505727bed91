"""FakeQuantize: an ``nn.Module`` that observes a tensor and fake-quantizes it (for QAT).

Built on the core layer only: a quantlens observer chooses the range, ``compute_qparams``
turns it into ``(scale, zero_point)`` and ``fake_quantize`` rounds in float with a
straight-through gradient. Any bit width from 2 to 8 works, so 4-bit weights train the
same way as 8-bit ones.

Two ways to track the range:

- ``track="running"``: the observer accumulates over every forward (activations; with the
  ``moving_average`` observer this is PyTorch's QAT default);
- ``track="current"``: the range is recomputed from the tensor of this forward alone
  (weights: the grid always covers the current weights, so the integer weights produced
  at conversion never leave ``[qmin, qmax]`` -- for 4-bit weights, 16 levels exactly).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from quantlens.core.distributed import broadcast, is_distributed, world_size
from quantlens.core.fake_quant import fake_quantize
from quantlens.core.observers import get_observer
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError

TRACKS = ("running", "current")
Track = Literal["running", "current"]


class FakeQuantize(nn.Module):
    """Observe, then quantize-dequantize in float (straight-through gradient).

    Args:
        scheme: the integer grid (bits, symmetry, per-tensor or per-channel).
        observer: a quantlens observer name (``"moving_average"``, ``"minmax"``, ``"mse"``, ...).
        track: ``"running"`` or ``"current"`` (see the module docstring).
        **observer_kwargs: passed to the observer (e.g. ``averaging_constant=0.01``).

    Attributes:
        scale, zero_point: buffers holding the current quantization parameters.
        observe_enabled, quantize_enabled: switches (``disable_observer()`` freezes the range).

    Example:
        >>> fq = FakeQuantize(QScheme(bits=4, granularity="per_channel"), "minmax", track="current")
        >>> w_hat = fq(torch.randn(8, 16))   # every row on its own 16-level grid
    """

    scale: torch.Tensor
    zero_point: torch.Tensor

    def __init__(
        self,
        scheme: QScheme,
        observer: str = "moving_average",
        *,
        track: Track = "running",
        **observer_kwargs,
    ):
        super().__init__()
        if track not in TRACKS:
            raise InputError(f"track must be one of {', '.join(TRACKS)}, got {track!r}")
        if scheme.granularity == "per_group" or scheme.codebook is not None:
            raise InputError(
                "FakeQuantize takes per-tensor or per-channel uniform schemes, got "
                f"{scheme.describe()}"
            )
        self.scheme = scheme
        self.observer_name = observer
        self.track = track
        self.observer_kwargs = dict(observer_kwargs)
        self.axis = scheme.axis if scheme.granularity == "per_channel" else None
        self.observer = get_observer(observer, axis=self.axis, **observer_kwargs)
        self.register_buffer("scale", torch.tensor([1.0]))
        self.register_buffer("zero_point", torch.tensor([0], dtype=torch.int64))
        self.observe_enabled = True
        self.quantize_enabled = True
        self.observed = False

    def extra_repr(self) -> str:
        return f"{self.scheme.describe()}, observer={self.observer_name}, track={self.track}"

    def enable_observer(self, enabled: bool = True) -> None:
        self.observe_enabled = bool(enabled)

    def disable_observer(self) -> None:
        self.observe_enabled = False

    def enable_fake_quant(self, enabled: bool = True) -> None:
        self.quantize_enabled = bool(enabled)

    def observe(self, x: torch.Tensor) -> None:
        """Fold ``x`` into the range and refresh ``scale`` / ``zero_point``."""
        if self.track == "current":
            self.observer = get_observer(self.observer_name, axis=self.axis, **self.observer_kwargs)
        self.observer.update(x.detach())
        self._refresh()

    def _refresh(self) -> None:
        """``scale`` / ``zero_point`` from the observer's range."""
        scale, zero_point = self.observer.qparams(self.scheme)
        scale = scale.reshape(-1).to(self.scale.device)
        self.scale.resize_(scale.shape).copy_(scale)
        zero_point = zero_point.reshape(-1).to(torch.int64)
        self.zero_point.resize_(zero_point.shape).copy_(zero_point)
        self.observed = True

    def sync(self, *, timeout: float | None = None) -> None:
        """Make the range identical on every rank of the process group (a collective: every
        rank calls it on the same modules in the same order; outside a group: nothing).

        While observing, the observer merges every rank's statistics (its own
        :meth:`~quantlens.core.observers.Observer.sync`) and ``scale`` / ``zero_point``
        follow from the merged range; the observer then counts that shared state once, so
        it can be synced again after more training. Frozen (``observe_enabled`` off), the
        trained range is kept and rank 0's is copied to the others, as
        ``DistributedDataParallel`` does with buffers.

        Example:
            >>> fq.sync()   # before converting on every rank
        """
        if not is_distributed():
            return
        if not self.observe_enabled:
            broadcast(self.scale, timeout=timeout)
            broadcast(self.zero_point, timeout=timeout)
            return
        self.observer.sync(timeout=timeout)
        self.observer.share(world_size())
        if self.observer.min_val is not None:  # else no rank observed anything
            self._refresh()

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero_point)``: 1-element tensors per tensor, ``(C,)`` per channel."""
        return self.scale, self.zero_point

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observe_enabled:
            self.observe(x)
        if not self.quantize_enabled or not self.observed:
            return x
        scale = self.scale.to(x.dtype)
        if self.axis is None:
            scale, zero_point = scale.reshape(()), self.zero_point.reshape(())
        else:
            zero_point = self.zero_point
        return fake_quantize(x, scale, zero_point, self.scheme)
