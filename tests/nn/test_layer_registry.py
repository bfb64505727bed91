"""Every class in the layer registry builds itself from a float layer the same way.

For each registered ``(family, float class) -> quantized class``: ``from_float(module,
spec)`` gives a layer that tracks the float one, ``empty(module, spec)`` gives the same
structure, which the first one's state dict fills to identical outputs, and a subclass of
the float class that keeps its ``forward`` maps to the same class. A new quantized layer is
tested here as soon as it registers (its float class needs an entry in ``FLOATS``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from helpers import random_tensor
from torch import nn

from quantlens import QScheme, quantize_tensor
from quantlens.core.metrics import cosine_similarity
from quantlens.nn.registry import DynamicSpec, quantized_class_for, quantized_classes

# float class -> (a small float layer, an input for it)
FLOATS: dict[type, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor]]] = {
    nn.Linear: (lambda: nn.Linear(64, 24), lambda: random_tensor(5, 64, seed=1)),
    nn.Embedding: (
        lambda: nn.Embedding(50, 32),
        lambda: torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(1)),
    ),
    nn.Conv2d: (lambda: nn.Conv2d(8, 16, 3, padding=1), lambda: random_tensor(2, 8, 6, 6, seed=1)),
    nn.LSTM: (lambda: nn.LSTM(16, 32, batch_first=True), lambda: random_tensor(2, 5, 16, seed=1)),
    nn.GRU: (lambda: nn.GRU(16, 32, batch_first=True), lambda: random_tensor(2, 5, 16, seed=1)),
}
SCHEME = QScheme(bits=8, granularity="per_channel")  # one that every weight-only layer takes


def _specs(family: str, module: nn.Module) -> tuple[object, object]:
    """``(spec for from_float, spec for empty)`` of ``family``."""
    if family == "weight_only":
        return quantize_tensor(module.weight.detach(), SCHEME), SCHEME
    return DynamicSpec(), DynamicSpec()


def _output(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    y = layer(x)
    return y[0] if isinstance(y, tuple) else y  # (an RNN returns (output, state))


REGISTERED = [
    pytest.param(family, float_cls, qcls, id=f"{family}-{qcls.__name__}-{float_cls.__name__}")
    for family in ("weight_only", "dynamic")
    for float_cls, qcls in quantized_classes(family).items()
]


def test_every_family_has_registered_layers():
    assert {p.values[2].__name__ for p in REGISTERED} >= {
        "QLinear",
        "QEmbedding",
        "QConv2d",
        "DynamicLinear",
        "DynamicRNN",
        "DynamicConv2d",
    }


@pytest.mark.parametrize("family,float_cls,qcls", REGISTERED)
def test_from_float_and_empty_round_trip(family, float_cls, qcls):
    assert float_cls in FLOATS, f"add a small {float_cls.__name__} and its input to FLOATS"
    make, make_input = FLOATS[float_cls]
    torch.manual_seed(0)
    fl, x = make().eval(), make_input()
    spec, empty_spec = _specs(family, fl)
    assert quantized_class_for(fl, family) is qcls
    q = qcls.from_float(fl, spec)
    assert type(q) is qcls
    with torch.no_grad():
        ref, y = _output(fl, x), _output(q, x)
    assert y.shape == ref.shape
    assert cosine_similarity(y, ref) > 0.99  # 8-bit weights (int8 activations for dynamic)

    empty = qcls.empty(fl, empty_spec)
    assert type(empty) is qcls and set(empty.state_dict()) == set(q.state_dict())
    empty.load_state_dict(q.state_dict())
    with torch.no_grad():
        assert torch.equal(_output(empty, x), y)


@pytest.mark.parametrize("family,float_cls,qcls", REGISTERED)
def test_a_subclass_keeping_forward_maps_to_the_same_class(family, float_cls, qcls):
    sub = type(f"My{float_cls.__name__}", (float_cls,), {"note": "extra attribute"})
    assert quantized_class_for(sub, family) is qcls
    overriding = type("Odd", (float_cls,), {"forward": lambda self, x: x})
    assert quantized_class_for(overriding, family) is None
