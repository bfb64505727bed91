"""QAT on real digits data: int8 and 4-bit weights from the pretrained digits-cnn, the
training helper, freezing, and the one-shot path."""

from __future__ import annotations

import pytest
import torch
from helpers import generator
from int8_helpers import accuracy

import quantlens as ql
from quantlens.errors import ConfigError, InputError
from quantlens.methods.backends import torch_ao


def _shuffled(data, seed: int, batch_size: int = 64):
    """Training batches in a seeded random order (a fresh order each call)."""
    order = torch.randperm(len(data), generator=generator(seed))
    x, y = data.inputs[order], data.labels[order]
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_qat_int8_loses_at_most_0_3_points(digits_cnn, digits):
    float_acc = accuracy(digits_cnn, digits["test"])
    qat = ql.prepare_qat(digits_cnn, ql.QAT(backend="x86"))
    torch.manual_seed(0)
    history = ql.train_qat(
        qat, _shuffled(digits["train"], 0), epochs=1, lr=1e-3, eval_data=digits["test"].as_pair()
    )
    qm = ql.convert(qat)
    assert float_acc - accuracy(qm, digits["test"]) <= 0.3
    assert len(qm.quantlens_summary.quantized) == 7
    assert set(history[0]) >= {
        "epoch",
        "train_loss",
        "train_accuracy",
        "eval_loss",
        "eval_accuracy",
    }


def test_qat_4bit_weights_lose_at_most_1_5_points_and_use_16_levels(digits_cnn, digits):
    float_acc = accuracy(digits_cnn, digits["test"])
    qat = ql.prepare_qat(digits_cnn, ql.QAT(bits=4), example_inputs=(digits["train"].inputs[:1],))
    torch.manual_seed(0)
    for epoch in range(2):
        ql.train_qat(qat, _shuffled(digits["train"], epoch), epochs=1, lr=1e-3)
    qm = ql.convert(qat)
    assert float_acc - accuracy(qm, digits["test"]) <= 1.5
    for record in qm.quantlens_summary.quantized:
        module = qm.get_submodule(record.name)
        weight = module.weight() if callable(module.weight) else module.weight
        ints = weight.int_repr()
        assert ints.min() >= -8 and ints.max() <= 7  # 4-bit values in int8 storage
    assert "4-bit" in qm.quantlens_summary.quantized[0].detail


def test_qat_training_recovers_what_3bit_post_training_quantization_loses(digits_cnn, digits):
    """The 4-bit acceptance above holds even untrained (4-bit per-channel PTQ already loses
    nothing on digits-cnn); at 3 bits PTQ loses several points and one epoch of QAT wins
    them back: the training, not the grid, makes the difference."""
    float_acc = accuracy(digits_cnn, digits["test"])
    config = ql.QAT(bits=3)
    ptq = ql.quantize(
        digits_cnn, config, calib_data=digits["calib"].batches(64)
    )  # same config, no training
    ptq_acc = accuracy(ptq, digits["test"])
    qat = ql.prepare_qat(digits_cnn, config, example_inputs=(digits["train"].inputs[:1],))
    torch.manual_seed(0)
    ql.train_qat(qat, _shuffled(digits["train"], 0), epochs=1, lr=1e-3)
    qat_acc = accuracy(ql.convert(qat), digits["test"])
    assert float_acc - ptq_acc >= 3.0  # post-training 3-bit weights hurt
    assert qat_acc - ptq_acc >= 3.0  # training recovers it
    assert float_acc - qat_acc <= 1.5


def test_prepared_model_trains_with_a_plain_loop_and_gradients_flow(digits_cnn, digits):
    qat = ql.prepare_qat(digits_cnn, ql.QAT())
    x, y = digits["train"].inputs[:32], digits["train"].labels[:32]
    loss = torch.nn.functional.cross_entropy(qat(x), y)
    loss.backward()
    grads = [p.grad for p in qat.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert any(isinstance(m, torch_ao.CoreFakeQuantize) for m in qat.modules())


def test_freezing_bn_and_observers_follow_the_epochs(digits_cnn, digits):
    qat = ql.prepare_qat(digits_cnn, ql.QAT(freeze_bn_after=1, freeze_observers_after=1))
    small = _shuffled(digits["train"], 0)[:3]
    history = ql.train_qat(qat, small, epochs=2, lr=1e-4)
    assert [h["bn_frozen"] for h in history] == [False, True]
    assert [h["observers_frozen"] for h in history] == [False, True]
    fqs = [m for m in qat.modules() if isinstance(m, torch_ao.CoreFakeQuantize)]
    running = [m for m in fqs if m.fq.track == "running"]
    assert running and all(not m.observer_enabled[0] for m in running)
    assert all(m.observer_enabled[0] for m in fqs if m.fq.track == "current")  # weights follow


def test_one_shot_qat_config_without_training(digits_cnn, digits):
    qm = ql.quantize(digits_cnn, ql.QAT(), calib_data=digits["calib"].batches(64))
    assert accuracy(digits_cnn, digits["test"]) - accuracy(qm, digits["test"]) <= 1.0


def test_qat_errors():
    with pytest.raises(ConfigError, match="weight bits"):
        ql.QAT(bits=1)
    with pytest.raises(InputError, match="prepare_qat"):
        ql.train_qat(torch.nn.Linear(2, 2), [(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))])
