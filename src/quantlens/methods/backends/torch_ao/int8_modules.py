"""The torch.ao module types that export code reads (it never calls into them).

Exporting a converted Static/QAT model needs to know which PyTorch int8 modules it holds;
those types live in torch.ao, so the lookups are here. Tested on torch 2.13.0.
"""

from __future__ import annotations

from quantlens.methods.backends.torch_ao._upstream import quiet


def int8_layer_kinds() -> dict[type, tuple[str, bool]]:
    """``{int8 module type: (kind, fused ReLU)}`` with kind ``"conv"`` or ``"linear"``."""
    with quiet():
        from torch.ao.nn import quantized as nnq
        from torch.ao.nn.intrinsic import quantized as nniq

    return {
        nnq.Conv1d: ("conv", False),
        nnq.Conv2d: ("conv", False),
        nnq.Conv3d: ("conv", False),
        nniq.ConvReLU1d: ("conv", True),
        nniq.ConvReLU2d: ("conv", True),
        nniq.ConvReLU3d: ("conv", True),
        nnq.Linear: ("linear", False),
        nniq.LinearReLU: ("linear", True),
    }


def quant_stub_types() -> tuple[type, type]:
    """``(Quantize, DeQuantize)``: the eager-mode boundaries of an int8 island."""
    with quiet():
        from torch.ao.nn import quantized as nnq

    return nnq.Quantize, nnq.DeQuantize


def observer_types() -> tuple[type, ...]:
    """Observer and fake-quantization base types (a model still prepared, not converted)."""
    with quiet():
        from torch.ao.quantization import FakeQuantizeBase, ObserverBase

    return FakeQuantizeBase, ObserverBase
