"""Classic vision architectures, written the way their papers and reference code write them.

Small widths for 32x32 RGB inputs and random weights: these are test subjects for a
quantizer, not trained classifiers. Each one carries the pattern that made its
architecture famous, in the form user code has it -- no QuantStub, no FloatFunctional,
no ``.contiguous()`` added for the quantizer's sake:

- :class:`LeNet`: the tutorial CNN, flattened with ``x.view(x.size(0), -1)``;
- :class:`MobileNetV2`: inverted residuals with ReLU6 and a linear bottleneck,
  ``x + self.conv(x)`` shortcuts (Sandler et al., 2018);
- :class:`ShuffleNetV2`: ``chunk`` into two branches, ``torch.cat``, and the channel
  shuffle by ``view`` / ``transpose`` / ``view`` (Ma et al., 2018);
- :class:`InceptionNet`: four parallel branches joined by ``torch.cat`` (Szegedy et al., 2015);
- :class:`DenseNet`: every layer reads the ``torch.cat`` of all earlier feature maps,
  pre-activation BatchNorm -> ReLU -> Conv (Huang et al., 2017);
- :class:`SqueezeNet`: Fire modules (squeeze 1x1, expand 1x1 and 3x3, concatenated), no
  BatchNorm, a convolutional classifier (Iandola et al., 2016).

One module per family: ``lenet``, ``mobile`` (MobileNetV2, ShuffleNetV2) and
``multibranch`` (Inception, DenseNet, SqueezeNet); every class is importable from here.

Shapes in comments: ``B`` batch, ``C`` channels, ``H``/``W`` height/width.

Example:
    >>> from quantlens.zoo import classic
    >>> model = classic.build("shufflenet-v2").eval()
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from quantlens.errors import UnknownNameError
from quantlens.zoo.classic.lenet import LeNet
from quantlens.zoo.classic.mobile import (
    ConvBNReLU6,
    InvertedResidual,
    MobileNetV2,
    ShuffleNetV2,
    ShuffleUnit,
    channel_shuffle,
)
from quantlens.zoo.classic.multibranch import (
    BasicConv2d,
    DenseBlock,
    DenseLayer,
    DenseNet,
    Fire,
    InceptionBlock,
    InceptionNet,
    SqueezeNet,
    Transition,
)

INPUT_SHAPE = (3, 32, 32)  # (C, H, W) every model here takes


MODELS: dict[str, Callable[[], nn.Module]] = {
    "lenet": LeNet,
    "mobilenet-v2": MobileNetV2,
    "shufflenet-v2": ShuffleNetV2,
    "inception": InceptionNet,
    "densenet": DenseNet,
    "squeezenet": SqueezeNet,
}


def build(name: str, *, seed: int = 0) -> nn.Module:
    """One of :data:`MODELS` with seeded random weights (in train mode, as constructors
    return models).

    Args:
        name: ``"lenet"``, ``"mobilenet-v2"``, ``"shufflenet-v2"``, ``"inception"``,
            ``"densenet"`` or ``"squeezenet"``.
        seed: the weights' seed (the global RNG is left as it was).

    Returns:
        The model, taking ``(B, 3, 32, 32)`` inputs and returning ``(B, 10)`` logits.

    Raises:
        UnknownNameError: ``name`` is not one of them (the message lists the valid names).

    Example:
        >>> build("densenet")(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    if name not in MODELS:
        raise UnknownNameError(f"unknown classic model {name!r}; valid names: {', '.join(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name]()


__all__ = [
    "INPUT_SHAPE",
    "MODELS",
    "BasicConv2d",
    "ConvBNReLU6",
    "DenseBlock",
    "DenseLayer",
    "DenseNet",
    "Fire",
    "InceptionBlock",
    "InceptionNet",
    "InvertedResidual",
    "LeNet",
    "MobileNetV2",
    "ShuffleNetV2",
    "ShuffleUnit",
    "SqueezeNet",
    "Transition",
    "build",
    "channel_shuffle",
]
