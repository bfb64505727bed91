"""Static and QAT on models written the way a PyTorch tutorial writes them: BatchNorm after
every convolution, ``x.view(x.size(0), -1)`` before the head, a two-branch ``torch.cat``.

Int8 kernels return channels-last tensors, which ``view`` cannot reshape; these models
failed at their first inference before quantlens made view inputs contiguous. Each is
quantized on the x86 and qnnpack engines (Static in graph and eager mode, QAT in graph
mode, the only one it has) and must agree with float: cosine >= 0.99 on random inputs, and
argmax agreement >= 95 % on the digits test split after a short training.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_similar, generator, torch_threads
from torch import nn

import quantlens as ql

BACKENDS = ("x86", "qnnpack")
pytestmark = pytest.mark.usefixtures("one_thread")


class TutorialCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> MaxPool, twice, then view and a Linear (8x8 inputs)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = x.view(x.size(0), -1)
        return self.fc(x)


class QATTutorialCNN(nn.Module):
    """The QAT tutorial's variant: no pooling, a strided convolution instead."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = x.view(x.size(0), -1)
        return self.fc(x)


class TwoBranchCNN(nn.Module):
    """Two branches concatenated, a 1x1 convolution, a Linear head."""

    def __init__(self):
        super().__init__()
        self.branch3 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.branch1 = nn.Sequential(nn.Conv2d(1, 8, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.mix = nn.Conv2d(16, 16, 1)
        self.bn = nn.BatchNorm2d(16)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.cat([self.branch3(x), self.branch1(x)], dim=1)
        x = self.pool(F.relu(self.bn(self.mix(x))))
        x = x.view(x.size(0), -1)
        return self.fc(x)


MODELS = (TutorialCNN, QATTutorialCNN, TwoBranchCNN)
# (method, mode): Static in both modes quantlens offers, QAT in graph mode
WAYS = (("static", "fx"), ("static", "eager"), ("qat", "fx"))


def _seeded(cls, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls()
    for m in model.modules():  # BatchNorms with statistics of their own, not the identity
        if isinstance(m, nn.BatchNorm2d):
            g = generator(seed + 1)
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def _int8(model: nn.Module, method: str, mode: str, backend: str, calib) -> nn.Module:
    if method == "static":
        return ql.quantize(model, ql.Static(backend=backend, mode=mode), calib_data=calib)
    return ql.quantize(model, ql.QAT(backend=backend), calib_data=calib)


def _train(model: nn.Module, data, epochs: int, lr: float) -> nn.Module:
    # module fixtures run before the one_thread fixture
    with torch.random.fork_rng(devices=[]), torch_threads(1):
        torch.manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(data.labels))
            for idx in order.split(64):
                loss = F.cross_entropy(model(data.inputs[idx]), data.labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.eval()


def _agreement(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x).argmax(1) == b(x).argmax(1)).float().mean().item() * 100


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_tutorial_model_int8_runs_and_matches_float_on_random_inputs(cls, backend):
    model = _seeded(cls)
    calib = torch.rand(64, 1, 8, 8, generator=generator(1))
    x = torch.rand(32, 1, 8, 8, generator=generator(2))
    with torch.no_grad():
        ref = model(x)
    for method, mode in WAYS:
        qm = _int8(model, method, mode, backend, calib)
        with torch.no_grad():
            out = qm(x)
        assert_similar(out, ref, min_cosine=0.99, msg=f"{cls.__name__} {method} {mode} {backend}")
        notes = " ".join(qm.quantlens_summary.notes)
        if mode == "fx":  # the view after the int8 kernels got a contiguous input, and said so
            assert "made the input of 1 view() call(s) contiguous" in notes
        kinds = {r.kind for r in qm.quantlens_summary.quantized}
        assert {"Conv2d", "Linear"} <= kinds, f"{method} {mode}: {kinds}"


@pytest.fixture(scope="module")
def trained(digits):
    return {cls: _train(_seeded(cls), digits["train"], epochs=3, lr=1e-2) for cls in MODELS}


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_tutorial_models_int8_agree_with_float_after_training_on_digits(trained, digits, backend):
    test, calib = digits["test"].inputs, digits["calib"].inputs
    for cls, model in trained.items():
        with torch.no_grad():
            float_acc = (model(test).argmax(1) == digits["test"].labels).float().mean().item()
        assert float_acc > 0.9, f"{cls.__name__} trained to {float_acc:.3f} only"
        for method, mode in WAYS[:2]:
            qm = _int8(model, method, mode, backend, calib)
            agree = _agreement(qm, model, test)
            assert agree >= 95, (
                f"{cls.__name__} {method} {mode} {backend}: {agree:.1f} % argmax agreement"
            )
        # QAT: prepare, one short epoch of training, convert; the int8 model must agree with
        # the float model it was fine-tuned from and with its own fake-quant self
        qat = ql.prepare_qat(model, ql.QAT(backend=backend), example_inputs=(calib[:2],))
        ql.train_qat(
            qat, (digits["train"].inputs, digits["train"].labels), epochs=1, lr=1e-3, progress=False
        )
        qm = ql.convert(qat)
        assert _agreement(qm, model, test) >= 95, f"{cls.__name__} qat {backend}"
        assert _agreement(qm, qat.eval(), test) >= 95, f"{cls.__name__} qat {backend} vs fake-quant"
