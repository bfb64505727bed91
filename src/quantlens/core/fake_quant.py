"""Fake quantization: quantize-dequantize in float, with a straight-through gradient."""

from __future__ import annotations

import torch

from quantlens.core.layout import from_blocks, qparam_shape, to_blocks
from quantlens.core.qtensor import check_float, check_scheme_type, check_zero_point
from quantlens.core.scheme import QScheme
from quantlens.errors import InputError


class _RoundClampSTE(torch.autograd.Function):
    """``s * (clip(round(x / s) + z, qmin, qmax) - z)`` whose gradient w.r.t. ``x`` is 1
    where ``round(x / s) + z`` lies inside ``[qmin, qmax]`` and 0 where it was clipped."""

    @staticmethod
    def forward(x, scale, zero_point, qmin, qmax, saturate=False):
        q = torch.round(x / scale) + zero_point
        inside = (q >= qmin) & (q <= qmax)
        out = (torch.clamp(q, qmin, qmax) - zero_point) * scale
        if saturate:  # s * (q - z) may leave the dtype's range: keep it finite
            info = torch.finfo(out.dtype)
            out = out.clamp(info.min, info.max)
        return out, inside

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad, _grad_inside):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None, None


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, scheme: QScheme
) -> torch.Tensor:
    """Quantize and dequantize ``x`` in float, differentiably.

    Forward: ``x_hat = s * (clip(round(x / s) + z, qmin, qmax) - z)``, exactly what
    ``quantize_tensor(x, ...).dequantize()`` gives. Backward (straight-through estimator):
    the rounding is treated as the identity, so ``d x_hat / d x`` is 1 inside the clipping
    range and 0 for values that were clipped; ``scale`` and ``zero_point`` get no gradient.
    Works under ``torch.autograd`` and ``torch.compile``.

    Args:
        x: float tensor.
        scale, zero_point: parameters shaped like ``layout.qparam_shape(x.shape, scheme)``.
        scheme: a uniform (non-codebook) scheme.

    Example:
        >>> fake_quantize(
        ...     torch.tensor([1.5, -2.3]), torch.tensor(0.2), torch.tensor(0), QScheme(bits=8)
        ... )
        tensor([ 1.6000, -2.4000])
    """
    check_float(x, "tensor to fake-quantize")
    check_scheme_type(scheme)
    if scheme.codebook is not None:
        raise InputError("fake_quantize supports uniform schemes only; drop the codebook for QAT")
    expected = qparam_shape(x.shape, scheme)
    scale = torch.as_tensor(scale, dtype=x.dtype)
    zero_point = torch.as_tensor(zero_point)
    if tuple(scale.shape) != expected and scale.numel() != 1:
        raise InputError(
            f"scale has shape {tuple(scale.shape)} but this scheme and tensor need {expected}"
        )
    if tuple(zero_point.shape) != tuple(scale.shape) and zero_point.numel() != 1:
        raise InputError(
            f"zero_point has shape {tuple(zero_point.shape)}, scale {tuple(scale.shape)}"
        )
    if not torch.compiler.is_compiling():  # data-dependent checks would break the graph
        if not (torch.isfinite(scale).all() and (scale > 0).all()):
            raise InputError(
                "scale must be positive and finite everywhere; compute it with compute_qparams"
            )
        zero_point = check_zero_point(zero_point, scheme)
        if x.numel() and not (
            torch.isfinite(x.detach().amax()) and torch.isfinite(x.detach().amin())
        ):
            raise InputError(
                "the tensor to fake-quantize holds NaN/Inf value(s); check the inputs or the "
                "learning rate (training may have diverged)"
            )
    scale = scale.reshape(()) if scale.numel() == 1 else scale
    zero_point = zero_point.to(x.dtype)
    zero_point = zero_point.reshape(()) if zero_point.numel() == 1 else zero_point
    saturate = False
    if not torch.compiler.is_compiling() and scale.numel():
        saturate = (
            float(scale.detach().abs().max()) * (scheme.levels - 1) * 1.001
            >= torch.finfo(x.dtype).max
        )
    blocks = to_blocks(x, scheme)
    out, _ = _RoundClampSTE.apply(
        blocks, scale.unsqueeze(-1), zero_point.unsqueeze(-1), scheme.qmin, scheme.qmax, saturate
    )
    return from_blocks(out, scheme, x.shape)
