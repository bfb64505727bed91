"""quantlens.testing.assert_quantized_close: the helper users put in their own test suites."""

import pytest
import torch
from torch import nn

from quantlens.errors import InputError
from quantlens.testing import assert_quantized_close


class TwoHeads(nn.Module):
    def __init__(self, noise_b: float = 0.0, out_features: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(8, out_features)
        self.noise_b = noise_b

    def forward(self, x):
        y = self.lin(x)
        return y, y * 2 + self.noise_b * torch.cos(13 * y)


def test_passes_and_returns_the_metrics():
    x = torch.randn(16, 8)
    result = assert_quantized_close(
        TwoHeads(), TwoHeads(noise_b=1e-4), x, min_sqnr_db=30, min_cosine=0.999
    )
    assert set(result) == {"output[0]", "output[1]"}
    assert result["output[0]"]["sqnr_db"] == float("inf")


def test_failure_names_the_worst_output_and_the_metric():
    x = torch.randn(16, 8)
    with pytest.raises(AssertionError) as info:
        assert_quantized_close(TwoHeads(), TwoHeads(noise_b=0.5), x, min_sqnr_db=30)
    message = str(info.value)
    assert "output[1]" in message and "SQNR" in message and "30 dB" in message


def test_agreement_and_atol():
    x = torch.randn(64, 8)
    with pytest.raises(AssertionError, match="max abs error"):
        assert_quantized_close(TwoHeads(), TwoHeads(noise_b=0.2), x, atol=1e-3)
    assert_quantized_close(TwoHeads(), TwoHeads(noise_b=1e-5), x, min_agreement=99.0, atol=1e-3)


def test_needs_a_tolerance():
    with pytest.raises(InputError, match="tolerance"):
        assert_quantized_close(TwoHeads(), TwoHeads(), torch.randn(2, 8))


class OneLogit(TwoHeads):
    """A binary classifier with a single logit; ``flip`` negates the logits of the last quarter."""

    def __init__(self, flip: bool = False):
        super().__init__(out_features=1)
        self.flip = flip

    def forward(self, x):
        y = self.lin(x)
        if self.flip:
            y = torch.cat([y[: 3 * len(y) // 4], -y[3 * len(y) // 4 :]])
        return y


def test_agreement_of_a_single_logit_is_its_sign():
    x = torch.randn(64, 8)
    result = assert_quantized_close(OneLogit(), OneLogit(), x, min_agreement=100.0)
    assert result["output"]["agreement"] == 100.0
    with pytest.raises(AssertionError, match=r"sign agreement 75 % is not >= 90 %"):
        assert_quantized_close(OneLogit(), OneLogit(flip=True), x, min_agreement=90.0)


def test_agreement_of_a_scalar_output_is_an_error():
    class Mean(nn.Module):
        def forward(self, x):
            return x.mean()

    with pytest.raises(InputError, match="min_agreement.*scalar"):
        assert_quantized_close(Mean(), Mean(), [torch.randn(4, 8)], min_agreement=99.0)
