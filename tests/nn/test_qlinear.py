import pytest
import torch
from conformance import SCHEMES, LayerConformance, scheme_params
from helpers import random_tensor
from torch import nn

from quantlens import QScheme, quantize_tensor
from quantlens.errors import InputError, SchemeError, UnknownNameError
from quantlens.nn import QLinear, force_kernel, kernel_paths, quantized_class_for
from quantlens.nn.kernels import cpu_features, select

IN, OUT = 512, 256
BATCHES = (1, 8, 64)
DTYPES = (torch.float32, torch.bfloat16)


def bound(path, dtype) -> float:
    """The stated tolerance of ``path`` (relative L2 error), plus bf16 output rounding."""
    base = path.rtol if path.rtol else 1e-6
    return base if dtype == torch.float32 else max(base, 1e-2)


def rel_error(y, ref) -> float:
    return float((y.double() - ref.double()).norm() / ref.double().norm())


class TestQLinearConformance(LayerConformance):
    qcls = QLinear

    def make_float(self, seed=0):
        lin = nn.Linear(IN, OUT)
        with torch.no_grad():
            lin.weight.copy_(random_tensor(OUT, IN, seed=seed, scale=0.05))
            lin.bias.copy_(random_tensor(OUT, seed=seed + 100, scale=0.1))
        return lin

    def make_input(self, layer, batch, dtype, seed=0):
        return random_tensor(batch, IN, seed=seed + 7).to(dtype)

    def reference(self, layer, x):
        return torch.nn.functional.linear(x.float(), layer.dequantized_weight(), layer.bias.float())


@scheme_params()
@pytest.mark.parametrize("path_name", list(kernel_paths()))
def test_every_path_matches_the_reference(scheme, path_name):
    _, _, layer = TestQLinearConformance().quantize(scheme)
    path = kernel_paths()[path_name]
    reason = path.accepts(layer)
    if reason:
        layer.kernel = path_name
        with pytest.raises(SchemeError, match=path_name):
            layer(torch.zeros(1, IN))
        return
    layer.kernel = path_name
    for batch in BATCHES:
        x = random_tensor(batch, IN, seed=batch)
        ref = torch.nn.functional.linear(x, layer.dequantized_weight(), layer.bias)
        for dtype in DTYPES:
            y = layer(x.to(dtype))
            assert y.dtype == dtype and y.shape == (batch, OUT)
            err = rel_error(y, ref)
            assert err <= bound(path, dtype), f"{path_name} batch {batch} {dtype}: {err:.2e}"


@pytest.mark.parametrize(
    "scheme",
    [
        SCHEMES["b4-per_group-asym"],
        SCHEMES["b8-per_channel-sym"],
        SCHEMES["b2-per_channel-asym"],
        SCHEMES["nf4-g64"],
    ],
    ids=["b4g", "b8c", "b2c", "nf4"],
)
@pytest.mark.parametrize("allow_aq", [False, True])
def test_auto_dispatch_is_within_the_chosen_paths_tolerance(scheme, allow_aq):
    fl, qt, _ = TestQLinearConformance().quantize(scheme)
    layer = QLinear.from_float(fl, qt, allow_activation_quant=allow_aq)
    for batch in BATCHES:
        x = random_tensor(batch, IN, seed=batch)
        ref = torch.nn.functional.linear(x, layer.dequantized_weight(), layer.bias)
        for dtype in DTYPES:
            path = select(layer, batch, dtype)
            assert path.name == layer.kernel_for(batch, dtype)
            assert rel_error(layer(x.to(dtype)), ref) <= bound(path, dtype)


def test_any_leading_dims_and_float16():
    _, _, layer = TestQLinearConformance().quantize(SCHEMES["b4-per_group-sym"])
    x = random_tensor(2, 3, 5, IN)
    y = layer(x)
    assert y.shape == (2, 3, 5, OUT)
    assert torch.equal(y, layer(x.reshape(-1, IN)).reshape(2, 3, 5, OUT))
    assert layer(x.half()).dtype == torch.float16
    with pytest.raises(InputError, match="last dimension"):
        layer(torch.zeros(3, IN + 1))


def test_no_bias_and_empty_batch():
    lin = nn.Linear(IN, OUT, bias=False)
    scheme = QScheme(bits=4, granularity="per_group", group_size=128)
    layer = QLinear.from_float(lin, quantize_tensor(lin.weight.detach(), scheme))
    assert layer.bias is None and "bias" not in layer.state_dict()
    x = random_tensor(3, IN)
    ref = torch.nn.functional.linear(x, layer.dequantized_weight())
    assert rel_error(layer(x), ref) < 2e-2
    assert layer(torch.zeros(0, IN)).shape == (0, OUT)


def test_forcing_a_path_and_errors():
    _, _, layer = TestQLinearConformance().quantize(SCHEMES["b8-per_channel-sym"])
    with pytest.raises(UnknownNameError, match="valid"):
        layer.kernel = "nope"
    layer.kernel = "int4pack"
    with pytest.raises(SchemeError, match="at most 4 bits"):
        layer(torch.zeros(1, IN))
    layer.kernel = "auto"
    model = nn.Sequential(layer, nn.ReLU())
    with force_kernel(model, "reference"):
        assert layer.kernel == "reference"
    assert layer.kernel == "auto"


def test_from_float_checks_its_arguments():
    lin = nn.Linear(IN, OUT)
    qt = quantize_tensor(lin.weight.detach()[:, :256], QScheme(bits=4, granularity="per_channel"))
    with pytest.raises(InputError, match="shape"):
        QLinear.from_float(lin, qt)
    with pytest.raises(SchemeError, match="divide"):
        QLinear(100, 8, bias=True, scheme=QScheme(bits=4, granularity="per_group", group_size=64))
    assert quantized_class_for(nn.Linear(2, 2)) is QLinear


def test_kernel_caches_stay_out_of_the_state_dict():
    _, _, layer = TestQLinearConformance().quantize(SCHEMES["b4-per_group-asym"])
    keys = set(layer.state_dict())
    for name in ("int4pack", "dense", "dense_bf16"):
        layer.kernel = name
        layer(torch.zeros(2, IN))
    assert len(layer._cache) >= 3 and set(layer.state_dict()) == keys
    layer.to(torch.float32)  # moving / casting drops derived weights
    assert not any(key[0] == "kernel" for key in layer._cache)


def test_activation_quant_can_be_ruled_out():
    fl, qt, _ = TestQLinearConformance().quantize(SCHEMES["b8-per_channel-sym"])
    fast = QLinear.from_float(fl, qt, allow_activation_quant=True)
    exact = QLinear.from_float(fl, qt)
    assert fast.kernel_for(1, torch.float32) == "fbgemm"
    for tokens in BATCHES:
        for dtype in DTYPES:
            assert not kernel_paths()[exact.kernel_for(tokens, dtype)].quantizes_activations
    assert QLinear.from_config(exact.config()).allow_activation_quant is False
    assert QLinear.from_config(fast.config()).allow_activation_quant is True


def test_int4pack_turns_down_out_features_it_cannot_pack():
    linear = torch.nn.Linear(256, 100)
    scheme = QScheme(bits=4, symmetric=False, granularity="per_group", group_size=64)
    layer = QLinear.from_float(linear, quantize_tensor(linear.weight, scheme))
    layer.kernel = "int4pack"
    with pytest.raises(Exception, match="multiple of 16"):
        layer(torch.randn(1, 256))


def test_automatic_choice_on_a_large_layer_follows_the_documented_rules():
    lin = nn.Linear(2048, 2048)  # 4M weights: above the small-layer rule

    def layer(**scheme):
        return QLinear.from_float(lin, quantize_tensor(lin.weight.detach(), QScheme(**scheme)))

    int4 = layer(bits=4, symmetric=False, granularity="per_group", group_size=128)
    int8 = layer(bits=8, granularity="per_channel", axis=0)
    nf4 = layer(bits=4, granularity="per_group", group_size=64, codebook="nf4")
    if "avx512_bf16" in cpu_features():
        expected = {
            (int4, 1): "int4pack",
            (int4, 15): "int4pack",
            (int4, 16): "dense_bf16",
            (int8, 1): "int8pack",
            (int8, 64): "dense_bf16",
            (nf4, 1): "dense",
            (nf4, 64): "dense_bf16",
        }
    else:
        expected = {
            (int4, 1): "int4pack",
            (int4, 31): "int4pack",
            (int4, 32): "dense",
            (int8, 1): "int8pack",
            (int8, 64): "dense",
            (nf4, 1): "dense",
            (nf4, 64): "dense",
        }
    chosen = {key: key[0].kernel_for(key[1], torch.float32) for key in expected}
    assert chosen == expected


@pytest.mark.parametrize("bias", [True, False])
def test_to_float_gives_the_linear_it_computes_with(bias):
    lin = nn.Linear(IN, OUT, bias=bias)
    layer = QLinear.from_float(
        lin, quantize_tensor(lin.weight.detach(), SCHEMES["b4-per_group-asym"])
    )
    back = layer.to_float()
    assert type(back) is nn.Linear and (back.in_features, back.out_features) == (IN, OUT)
    assert torch.equal(back.weight, layer.dequantized_weight())
    assert (back.bias is None) == (not bias) and (not bias or torch.equal(back.bias, layer.bias))
