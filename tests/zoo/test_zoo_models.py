"""The zoo's models: they load, run on their data, and the trained ones are accurate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantlens import zoo
from quantlens.checkpoint import build_skeleton

pytest.importorskip("sklearn")

# Float test accuracy measured with `python scripts/train_digits_cnn.py` (450 test images);
# asserted minus a small margin so a rebuilt weights file within noise still passes.
MEASURED_ACCURACY = {
    "digits-cnn": 0.9933,
    "cat-cnn": 0.9867,
    "digits-lstm": 0.9756,
    "digits-gru": 0.9822,
}
MARGIN = 0.005
TRAINED = list(MEASURED_ACCURACY)


def _accuracy(model: nn.Module, data: zoo.ZooData) -> float:
    with torch.no_grad():
        return (model(data.inputs).argmax(1) == data.labels).float().mean().item()


@pytest.mark.parametrize("name", TRAINED)
def test_trained_models_reach_their_measured_accuracy(name):
    model = zoo.load_model(name)
    data = zoo.load_dataset(zoo.default_dataset_for(name), "test")
    assert not model.training
    assert _accuracy(model, data) >= MEASURED_ACCURACY[name] - MARGIN


def test_digits_cnn_meets_the_97_percent_bar():
    test, train = zoo.load_dataset("digits", "test"), zoo.load_dataset("digits", "train")
    assert len(test) == 450 and len(train) == 1347  # scikit-learn's 1,797 digits, fixed split
    assert (
        torch.cdist(test.inputs.flatten(1), train.inputs.flatten(1)).min() > 0
    )  # held out from training
    assert _accuracy(zoo.load_model("digits-cnn"), test) >= 0.97


@pytest.mark.parametrize("name", TRAINED)
def test_models_run_on_their_first_batch_and_example_inputs(name):
    model = zoo.load_model(name)
    x, y = zoo.load_dataset(zoo.default_dataset_for(name), "calib").batches(32)[0]
    assert y.shape == (32,)
    with torch.no_grad():
        assert model(x).shape == (32, 10)
        (example,) = zoo.example_inputs(name)
        assert model(example).shape == (example.shape[0], 10)


@pytest.mark.parametrize("name", TRAINED)
def test_random_init_is_seeded_and_differs_from_trained(name):
    a, b = zoo.load_model(name, pretrained=False), zoo.load_model(name, pretrained=False)
    trained = zoo.load_model(name)
    for (key, pa), pb, pt in zip(
        a.state_dict().items(), b.state_dict().values(), trained.state_dict().values()
    ):
        assert torch.equal(pa, pb), key
    assert not torch.equal(next(a.parameters()), next(trained.parameters()))


def test_global_rng_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    zoo.load_model("cat-cnn", pretrained=False)
    assert torch.equal(torch.rand(3), expected)


def test_weight_files_are_small_safetensors():
    for name in TRAINED:
        path = zoo.WEIGHTS_DIR / zoo.model_spec(name).weights
        assert path.suffix == ".safetensors"
        assert path.stat().st_size < 300_000


def test_source_rebuilds_the_skeleton():
    model = zoo.load_model("digits-cnn")
    assert model.quantlens_source["zoo"] == "digits-cnn"
    skeleton = build_skeleton(model.quantlens_source)
    assert type(skeleton) is type(model)
    skeleton.load_state_dict(model.state_dict())
    x = zoo.example_inputs("digits-cnn")[0]
    with torch.no_grad():
        assert torch.equal(skeleton.eval()(x), model(x))


def _traced_ops(model: nn.Module) -> set:
    graph = torch.fx.symbolic_trace(model).graph
    return {node.target for node in graph.nodes if node.op == "call_function"}


def test_residual_add_and_cat_are_plain_torch_ops():
    import operator

    cnn, cat = zoo.load_model("digits-cnn"), zoo.load_model("cat-cnn")
    for model in (cnn, cat):
        assert not any(
            "FloatFunctional" in type(m).__name__ or "Quant" in type(m).__name__
            for m in model.modules()
        )
    assert operator.add in _traced_ops(cnn)
    assert torch.cat in _traced_ops(cat)


def test_rnn_models_hold_an_lstm_and_a_gru():
    assert isinstance(zoo.load_model("digits-lstm").rnn, nn.LSTM)
    assert isinstance(zoo.load_model("digits-gru").rnn, nn.GRU)


def test_resnet18_has_the_torchvision_shape():
    model = zoo.load_model("resnet18")
    assert sum(p.numel() for p in model.parameters()) == 11_689_512  # torchvision resnet18
    names = dict(model.named_modules())
    assert {"conv1", "bn1", "layer1.0.conv1", "layer2.0.downsample.0", "layer4.1.bn2", "fc"} <= set(
        names
    )
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20
    (x,) = zoo.example_inputs("resnet18")
    (first,) = zoo.load_dataset(zoo.default_dataset_for("resnet18")).batches(2)[0]
    with torch.no_grad():
        out = model(x)
        assert model(first).shape == (2, 1000)
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    again = zoo.load_model("resnet18", pretrained=False)
    assert torch.equal(again.fc.weight, model.fc.weight)
