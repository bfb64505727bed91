import pytest

from quantlens.core import QScheme
from quantlens.errors import QuantlensError, SchemeError


@pytest.mark.parametrize("bits", [0, 9, -1, 2.0, True, "8"])
def test_bits_out_of_range(bits):
    with pytest.raises(SchemeError, match="bits must be an integer from 1 to 8"):
        QScheme(bits=bits)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"granularity": "per_group"}, "per_group needs group_size"),
        ({"granularity": "per_group", "group_size": 0}, "positive integer"),
        (
            {"granularity": "per_channel", "group_size": 64},
            "only applies to granularity='per_group'",
        ),
        ({"granularity": "per_row"}, "granularity must be one of"),
        ({"pad": True}, "pad=True only applies"),
        ({"bits": 1}, "1-bit symmetric"),
        ({"codebook": "nf3"}, "codebook must be None or one of"),
        ({"codebook": "nf4", "bits": 3}, "use bits=4"),
    ],
)
def test_invalid_combinations(kwargs, match):
    with pytest.raises(SchemeError, match=match) as info:
        QScheme(**kwargs)
    assert isinstance(info.value, QuantlensError)


@pytest.mark.parametrize(
    "kwargs, qmin, qmax",
    [
        ({"bits": 8}, -128, 127),
        ({"bits": 8, "symmetric": False}, 0, 255),
        ({"bits": 4, "symmetric": False, "signed": True}, -8, 7),
        ({"bits": 2}, -2, 1),
        ({"bits": 1, "symmetric": False}, 0, 1),
    ],
)
def test_integer_range(kwargs, qmin, qmax):
    scheme = QScheme(**kwargs)
    assert (scheme.qmin, scheme.qmax) == (qmin, qmax)


def test_defaults_and_round_trip():
    assert QScheme(granularity="per_channel").axis == 0
    group = QScheme(bits=4, symmetric=False, granularity="per_group", group_size=64)
    assert group.axis == -1
    assert group.describe() == "uint4 asym per_group(64)"
    assert QScheme.from_dict(group.to_dict()) == group


def test_group_size_must_divide_axis_without_pad():
    import torch

    from quantlens.core import quantize_tensor

    scheme = QScheme(bits=4, granularity="per_group", group_size=3)
    with pytest.raises(SchemeError, match="pass pad=True"):
        quantize_tensor(torch.randn(2, 8), scheme)
    padded = QScheme(bits=4, granularity="per_group", group_size=3, pad=True)
    assert quantize_tensor(torch.randn(2, 8), padded).scale.shape == (2, 3)
