"""The networks that join parallel branches with ``torch.cat``: Inception's four branches,
DenseNet's growing feature stack, SqueezeNet's Fire modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
