"""The mobile networks: MobileNetV2's inverted residuals (ReLU6, linear bottleneck,
``x + self.conv(x)`` shortcuts) and ShuffleNetV2's ``chunk`` / ``torch.cat`` / channel
shuffle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
