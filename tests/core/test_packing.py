import math

import pytest
import torch
from helpers import generator

from quantlens.core import pack, unpack
from quantlens.core.packing import packed_nbytes
from quantlens.errors import InputError, QuantlensError


def _codes(n, bits, seed=0, dtype=torch.uint8):
    g = generator(seed)
    return torch.randint(0, 1 << bits, (n,), generator=g).to(dtype)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [0, 1, 3, 7, 8, 9, 31, 1001])
def test_round_trip_and_exact_size(bits, n):
    q = _codes(n, bits, seed=n + bits)
    packed = pack(q, bits)
    assert packed.dtype == torch.uint8 and packed.ndim == 1
    assert packed.numel() == math.ceil(n * bits / 8) == packed_nbytes(n, bits)
    assert torch.equal(unpack(packed, bits, q.shape), q)


@pytest.mark.parametrize("bits", range(1, 9))
def test_every_value_and_any_shape(bits):
    values = torch.arange(1 << bits, dtype=torch.int32).repeat(3)[: 3 * 5 * (1 << bits) // 5]
    q = values.reshape(3, -1)
    assert torch.equal(unpack(pack(q, bits), bits, q.shape), q.to(torch.uint8))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_signed_codes(bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    q = torch.arange(lo, hi + 1, dtype=torch.int8).reshape(1, -1).repeat(2, 1)
    out = unpack(pack(q, bits, signed=True), bits, q.shape, signed=True)
    assert out.dtype == torch.int8 and torch.equal(out, q)


def test_known_layout_least_significant_first():
    assert pack(torch.tensor([1, 2, 3, 0], dtype=torch.uint8), bits=2).tolist() == [0b00111001]
    assert pack(torch.tensor([1, 0, 1], dtype=torch.uint8), bits=1).tolist() == [0b101]
    assert pack(torch.tensor([0xA, 0x5], dtype=torch.uint8), bits=4).tolist() == [0x5A]
    # 3-bit: codes 1..8 wrap across bytes
    assert pack(torch.tensor([7, 1, 2], dtype=torch.uint8), bits=3).tolist() == [0b10001111, 0b0]


@pytest.mark.parametrize(
    "q, bits, match",
    [
        (torch.tensor([0.5, 1.0]), 4, "integer tensor"),
        (torch.tensor([0, 16]), 4, r"do not fit 4 bits"),
        (torch.tensor([-1, 0]), 2, "pass signed=True"),
        (torch.tensor([0, 1]), 0, "bits must be"),
        (torch.tensor([0, 1]), 9, "bits must be"),
    ],
)
def test_bad_input(q, bits, match):
    with pytest.raises(QuantlensError, match=match):
        pack(q, bits)


def test_unpack_checks_size_and_dtype():
    packed = pack(_codes(10, 3), 3)
    with pytest.raises(InputError, match="cannot hold shape"):
        unpack(packed, 3, (11,))
    with pytest.raises(InputError, match="uint8"):
        unpack(packed.to(torch.int32), 3, (10,))
