import pytest
import torch
from conformance import SCHEMES, LayerConformance
from helpers import random_tensor
from torch import nn

from quantlens import QScheme, quantize_tensor
from quantlens.errors import InputError
from quantlens.nn import QConv2d, quantized_class_for


class TestQConv2dConformance(LayerConformance):
    qcls = QConv2d

    def make_float(self, seed=0):
        conv = nn.Conv2d(32, 16, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(random_tensor(16, 32, 3, 3, seed=seed, scale=0.1))
            conv.bias.copy_(random_tensor(16, seed=seed + 1, scale=0.1))
        return conv

    def make_input(self, layer, batch, dtype, seed=0):
        return random_tensor(batch, 32, 6, 6, seed=seed + 3).to(dtype)

    def reference(self, layer, x):
        return torch.nn.functional.conv2d(
            x.float(), layer.dequantized_weight(), layer.bias, padding=1
        )

    def quantize(self, scheme, seed=0):
        if (
            scheme.granularity == "per_group"
        ):  # group the input channels instead of the kernel width
            scheme = QScheme(
                bits=scheme.bits,
                symmetric=scheme.symmetric,
                granularity="per_group",
                axis=1,
                group_size=16,
                codebook=scheme.codebook,
            )
        return super().quantize(scheme, seed)


@pytest.mark.parametrize(
    "name", ["b8-per_channel-sym", "b4-per_channel-asym", "nf4-g64", "b3-per_group-asym"]
)
def test_matches_dequantize_then_convolve(name):
    t = TestQConv2dConformance()
    _, _, layer = t.quantize(SCHEMES[name])
    x = t.make_input(layer, 2, torch.float32)
    assert torch.equal(layer(x), t.reference(layer, x))
    layer.kernel = "reference"
    assert torch.equal(layer(x), t.reference(layer, x))
    assert layer(x.bfloat16()).dtype == torch.bfloat16


def test_conv_options_and_errors():
    conv = nn.Conv2d(8, 8, (3, 1), stride=2, padding="valid", groups=2, bias=False)
    qt = quantize_tensor(conv.weight.detach(), QScheme(bits=4, granularity="per_channel"))
    layer = QConv2d.from_float(conv, qt)
    x = random_tensor(1, 8, 9, 9)
    ref = torch.nn.functional.conv2d(x, qt.dequantize(), None, 2, "valid", 1, 2)
    assert torch.equal(layer(x), ref)
    assert quantized_class_for(conv) is QConv2d
    with pytest.raises(InputError, match="padding_mode"):
        QConv2d.from_float(nn.Conv2d(2, 2, 3, padding_mode="reflect"), qt)


def test_to_float_gives_the_conv_it_computes_with():
    conv = nn.Conv2d(8, 4, (3, 1), stride=2, padding=1, dilation=2, groups=2)
    layer = QConv2d.from_float(
        conv, quantize_tensor(conv.weight.detach(), QScheme(bits=4, granularity="per_channel"))
    )
    back = layer.to_float()
    assert type(back) is nn.Conv2d and repr(back) == repr(conv)
    assert torch.equal(back.weight, layer.dequantized_weight()) and torch.equal(
        back.bias, layer.bias
    )
    x = random_tensor(1, 8, 9, 9)
    assert torch.equal(back(x), layer(x))
