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
import torch.nn.functional as F
from torch import nn

from quantlens.errors import UnknownNameError

INPUT_SHAPE = (3, 32, 32)  # (C, H, W) every model here takes


class LeNet(nn.Module):
    """The tutorial CNN: Conv -> BatchNorm -> ReLU -> MaxPool twice, ``view``, two Linears."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 5, padding=2)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * 8 * 8, 120)
        self.fc2 = nn.Linear(120, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # (B, 16, 16, 16)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # (B, 32, 8, 8)
        x = x.view(x.size(0), -1)  # (B, 2048)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class ConvBNReLU6(nn.Sequential):
    """MobileNetV2's Conv -> BatchNorm -> ReLU6 (``groups=channels`` for depthwise)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> linear projection (1x1, no activation); the
    shortcut is used when the block keeps the shape."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = c_in * expand_ratio
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(c_in, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """A narrow MobileNetV2: stem, seven inverted residual blocks, 1x1 head, pooled classifier."""

    # expand ratio t, channels c, repeats n, first stride s -- the paper's table, shortened
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2))

    def __init__(self, num_classes: int = 10, last_channel: int = 128):
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU6(3, 16, stride=1)]
        c_in = 16
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        layers.append(ConvBNReLU6(c_in, last_channel, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 128, 4, 4)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)  # (B, 128)
        return self.classifier(x)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: ``(B, g*k, H, W) -> (B, k*g, H, W)`` interleaved."""
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)  # (B, g, k, H, W)
    x = torch.transpose(x, 1, 2).contiguous()  # (B, k, g, H, W)
    return x.view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: stride 1 splits the channels in half and transforms one half;
    stride 2 transforms both (the left one depthwise-downsampled). Then cat and shuffle."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        half = c_out // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
                nn.BatchNorm2d(c_in),
                nn.Conv2d(c_in, half, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        c_branch = c_in if stride > 1 else half
        self.branch2 = nn.Sequential(
            nn.Conv2d(c_branch, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """A narrow ShuffleNetV2: stem, three stages of shuffle units, 1x1 conv, mean-pooled head."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (24, 48, 96, 192)):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, c_in = [], widths[0]
        for c_out in widths[1:3]:
            stages.append(nn.Sequential(ShuffleUnit(c_in, c_out, 2), ShuffleUnit(c_out, c_out, 1)))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.conv5 = nn.Sequential(
            nn.Conv2d(c_in, widths[3], 1, bias=False),
            nn.BatchNorm2d(widths[3]),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.stages(self.conv1(x)))  # (B, 192, 8, 8)
        x = x.mean([2, 3])  # global average pool, as the reference code does
        return self.fc(x)


class BasicConv2d(nn.Module):
    """GoogLeNet's Conv -> BatchNorm (eps 0.001) -> functional ReLU."""

    def __init__(self, c_in: int, c_out: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class InceptionBlock(nn.Module):
    """Four branches -- 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3; max pool -> 1x1 -- concatenated."""

    def __init__(
        self, c_in: int, c1: int, c3_red: int, c3: int, c5_red: int, c5: int, pool_proj: int
    ):
        super().__init__()
        self.branch1 = BasicConv2d(c_in, c1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(c_in, c3_red, kernel_size=1),
            BasicConv2d(c3_red, c3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(c_in, c5_red, kernel_size=1),
            BasicConv2d(c5_red, c5, kernel_size=3, padding=1),
            BasicConv2d(c5, c5, kernel_size=3, padding=1),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(c_in, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(outputs, 1)


class InceptionNet(nn.Module):
    """A small GoogLeNet: stem, two Inception blocks around a max pool, dropout, Linear."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = BasicConv2d(3, 32, kernel_size=3, padding=1)
        self.inception3a = InceptionBlock(32, 16, 16, 32, 8, 16, 16)  # -> 80 channels
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.inception3b = InceptionBlock(80, 32, 32, 48, 8, 24, 24)  # -> 128 channels
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inception3a(self.conv1(x))  # (B, 80, 32, 32)
        x = self.inception3b(self.maxpool(x))  # (B, 128, 16, 16)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 128)
        return self.fc(self.dropout(x))


class DenseLayer(nn.Module):
    """BatchNorm -> ReLU -> 1x1 Conv (bottleneck) -> BatchNorm -> ReLU -> 3x3 Conv, reading
    the concatenation of every earlier feature map."""

    def __init__(self, c_in: int, growth: int, bn_size: int = 4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        concated = torch.cat(inputs, 1)
        out = self.conv1(self.relu1(self.norm1(concated)))
        return self.conv2(self.relu2(self.norm2(out)))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; returns all feature maps concatenated."""

    def __init__(self, num_layers: int, c_in: int, growth: int):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(c_in + i * growth, growth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BatchNorm -> ReLU -> 1x1 Conv -> 2x2 average pool between dense blocks."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.AvgPool2d(2, stride=2),
        )


class DenseNet(nn.Module):
    """A small DenseNet-BC: stem conv, two dense blocks with a transition, BN, pooled head."""

    def __init__(self, num_classes: int = 10, growth: int = 12, block: tuple[int, int] = (3, 3)):
        super().__init__()
        c = 2 * growth
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, c, 3, padding=1, bias=False))
        self.features.add_module("denseblock1", DenseBlock(block[0], c, growth))
        c += block[0] * growth
        self.features.add_module("transition1", Transition(c, c // 2))
        c //= 2
        self.features.add_module("denseblock2", DenseBlock(block[1], c, growth))
        c += block[1] * growth
        self.features.add_module("norm5", nn.BatchNorm2d(c))
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)  # (B, 78, 16, 16)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        return self.classifier(out)


class Fire(nn.Module):
    """SqueezeNet's Fire module: squeeze 1x1, then expand 1x1 and 3x3 side by side."""

    def __init__(self, c_in: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [
                self.expand1x1_activation(self.expand1x1(x)),
                self.expand3x3_activation(self.expand3x3(x)),
            ],
            1,
        )


class SqueezeNet(nn.Module):
    """A small SqueezeNet 1.1: no BatchNorm, Fire modules, a 1x1-conv classifier, pooled."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(32, 8, 32, 32),
            Fire(64, 8, 32, 32),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(64, 16, 64, 64),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Conv2d(128, num_classes, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.classifier(self.features(x))  # (B, 10, 1, 1)
        return torch.flatten(x, 1)


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


__all__ = ["INPUT_SHAPE", "MODELS", "build", "channel_shuffle"]
