"""The zoo's model definitions, written as plain ``nn.Module`` code.

Nothing here is written for quantization: residual adds are ``out = out + identity``,
concatenations are ``torch.cat``, and there are no QuantStub/DeQuantStub or
FloatFunctional modules. The quantizers have to cope with models as users write them.

Shapes in comments: ``B`` batch, ``C`` channels, ``H``/``W`` height/width, ``T`` time steps.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """A ``Conv2d -> BatchNorm2d -> ReLU`` block with "same" padding for odd kernels."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 Conv-BN layers with an identity shortcut: ``relu(f(x) + x)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu2(out)


class DigitsCNN(nn.Module):
    """A small residual CNN for the 8x8 scikit-learn digits (input ``(B, 1, 8, 8)`` in [0, 1]).

    stem Conv-BN-ReLU (16 ch, 8x8) -> residual block -> strided Conv-BN-ReLU (32 ch, 4x4)
    -> residual block -> global average pool -> Linear(32, 10).

    Example:
        >>> DigitsCNN()(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.stem = conv_bn_relu(1, width)
        self.block1 = ResidualBlock(width)
        self.down = conv_bn_relu(width, 2 * width, stride=2)
        self.block2 = ResidualBlock(2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(self.stem(x))  # (B, C, 8, 8)
        x = self.block2(self.down(x))  # (B, 2C, 4, 4)
        x = torch.flatten(self.pool(x), 1)  # (B, 2C)
        return self.fc(x)


class CatCNN(nn.Module):
    """A tiny two-branch CNN joined by ``torch.cat`` (input ``(B, 1, 8, 8)``).

    A 3x3 branch and a 1x1 branch run side by side and are concatenated on channels,
    the pattern of Inception/DenseNet-style models.

    Example:
        >>> CatCNN()(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.branch3 = conv_bn_relu(1, width, kernel=3)
        self.branch1 = conv_bn_relu(1, width, kernel=1)
        self.mix = conv_bn_relu(2 * width, 2 * width)
        self.down = conv_bn_relu(2 * width, 2 * width, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.branch3(x), self.branch1(x)], dim=1)  # (B, 2C, 8, 8)
        x = self.down(self.mix(x))  # (B, 2C, 4, 4)
        return self.fc(torch.flatten(self.pool(x), 1))


class DigitsRNN(nn.Module):
    """An LSTM or GRU classifier reading a digit image as a sequence of rows.

    Input ``(B, T=8, F=8)``: 8 time steps, each one row of 8 pixels in [0, 1]. The last
    hidden state goes through a Linear head.

    Args:
        cell: ``"lstm"`` or ``"gru"``.
        hidden: hidden size.

    Example:
        >>> DigitsRNN("gru")(torch.rand(2, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, cell: str = "lstm", hidden: int = 64, num_features: int = 8, num_classes: int = 10
    ):
        super().__init__()
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn_cls(num_features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, H)
        return self.fc(out[:, -1])  # (B, classes)


class BasicBlock(nn.Module):
    """The ResNet-18/34 basic block: two 3x3 Conv-BN, identity or 1x1 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu(out)


class ResNet18(nn.Module):
    """A ResNet-18-shaped network (the torchvision layout) for 224x224 RGB input.

    Module names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``),
    so name patterns written for torchvision's resnet18 work here too.

    Example:
        >>> ResNet18()(torch.rand(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths = (64, 128, 256, 512)
        c_in = 64
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(
                self,
                f"layer{i}",
                nn.Sequential(BasicBlock(c_in, width, stride), BasicBlock(width, width)),
            )
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, 56, 56)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 512)
        return self.fc(x)
