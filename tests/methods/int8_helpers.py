"""The digits CNN fixture and small models shared by the Static / QAT tests (the digits splits
come from tests/conftest.py).

The fixture is made visible to tests/methods by conftest.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantlens import zoo


@pytest.fixture(scope="module")
def digits_cnn():
    return zoo.load_model("digits-cnn")


def accuracy(model: nn.Module, data) -> float:
    """Test accuracy in percent."""
    with torch.no_grad():
        return (model(data.inputs).argmax(1) == data.labels).float().mean().item() * 100


class Gate(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace this forward."""

    def forward(self, x):
        if x.mean() > 0.5:
            return x * 0.5
        return x


class GatedNet(nn.Module):
    """Conv-BN-ReLU, an untraceable custom module, a Linear head (input (B, 1, 8, 8))."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.gate = Gate()
        self.fc = nn.Linear(8 * 64, 10)

    def forward(self, x):
        x = self.gate(self.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(x, 1))


class BranchyNet(GatedNet):
    """Control flow in the model's own forward: no graph capture at all."""

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        if x.sum() > 0:
            x = x + 1
        return self.fc(torch.flatten(x, 1))


def seeded(cls, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls().eval()
