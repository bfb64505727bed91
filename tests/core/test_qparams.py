"""compute_qparams and quantize_tensor over every granularity, axis and rank."""

import pytest
import torch
from helpers import assert_similar, random_tensor, torch_threads

import quantlens.core.qtensor as qtensor_module
from quantlens.core import QScheme, compute_qparams, quantize_tensor
from quantlens.core.layout import from_blocks, qparam_shape, to_blocks

SCHEMES = [
    QScheme(bits=8),
    QScheme(bits=8, symmetric=False),
    QScheme(bits=4, symmetric=True, signed=False),
    QScheme(bits=2, symmetric=False),
]


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.describe())
@pytest.mark.parametrize("lo, hi", [(-1.0, 3.0), (0.5, 2.0), (-4.0, -0.25), (-0.3, 0.3)])
def test_zero_exactly_representable(scheme, lo, hi):
    scale, zp = compute_qparams(torch.tensor(lo), torch.tensor(hi), scheme)
    assert scale > 0 and torch.isfinite(scale)
    assert scheme.qmin <= zp <= scheme.qmax
    assert (
        quantize_tensor(torch.zeros(3), scheme, scale=scale, zero_point=zp).dequantize().eq(0).all()
    )


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.describe())
@pytest.mark.parametrize("value", [0.0, 1.0, -2.5])
def test_constant_tensor(scheme, value):
    x = torch.full((4, 4), value)
    qt = quantize_tensor(x, scheme)
    assert torch.isfinite(qt.scale).all() and (qt.scale > 0).all()
    x_hat = qt.dequantize()
    assert torch.isfinite(x_hat).all()
    assert (x_hat - x).abs().max() <= qt.scale / 2 + 1e-6


def test_symmetric_and_asymmetric_formulas():
    sym = QScheme(bits=8)
    scale, zp = compute_qparams(torch.tensor(-1.0), torch.tensor(3.0), sym)
    assert scale.item() == pytest.approx(3.0 / 127) and zp.item() == 0
    unsigned_sym = QScheme(bits=8, symmetric=True, signed=False)
    scale, zp = compute_qparams(torch.tensor(-1.0), torch.tensor(3.0), unsigned_sym)
    assert scale.item() == pytest.approx(3.0 / 127) and zp.item() == 128
    asym = QScheme(bits=8, symmetric=False)
    scale, zp = compute_qparams(torch.tensor(-1.0), torch.tensor(3.0), asym)
    assert scale.item() == pytest.approx(4.0 / 255) and zp.item() == 64
    assert zp.dtype == torch.int32 and scale.dtype == torch.float32


def test_asymmetric_uses_full_grid():
    x = torch.linspace(-1.0, 3.0, 1001)
    qt = quantize_tensor(x, QScheme(bits=8, symmetric=False))
    assert qt.data.dtype == torch.uint8
    assert qt.data.min() == 0 and qt.data.max() == 255


CASES = [
    ((6,), "per_channel", 0, None),
    ((8, 16), "per_channel", 0, None),
    ((8, 16), "per_channel", 1, None),
    ((8, 16), "per_channel", -1, None),
    ((4, 6, 3, 3), "per_channel", 1, None),
    ((16,), "per_group", -1, 4),
    ((8, 16), "per_group", -1, 8),
    ((8, 16), "per_group", 0, 4),
    ((2, 8, 5), "per_group", 1, 2),
    ((3, 4, 5, 6), "per_group", 2, 5),
]


@pytest.mark.parametrize("shape, granularity, axis, group", CASES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_granularity_any_axis_any_rank(shape, granularity, axis, group, symmetric):
    scheme = QScheme(
        bits=8, symmetric=symmetric, granularity=granularity, axis=axis, group_size=group
    )
    x = random_tensor(*shape, seed=len(shape))
    qt = quantize_tensor(x, scheme)
    assert qt.data.shape == x.shape
    assert qt.scale.shape == qparam_shape(x.shape, scheme) == qt.zero_point.shape
    err = (qt.dequantize() - x).abs()
    # every element is within half a step of its own scale
    per_elem_scale = _expand(qt.scale, x.shape, scheme)
    assert (err <= per_elem_scale / 2 + 1e-6).all()


def _expand(scale, shape, scheme):
    """Each element's own scale, by quantizing a tensor of ones with unit spacing."""
    from quantlens.core.layout import from_blocks, to_blocks

    blocks = to_blocks(torch.zeros(shape), scheme)
    return from_blocks(blocks + scale.unsqueeze(-1), scheme, shape)


def test_per_channel_matches_slices():
    x = random_tensor(5, 7, seed=3)
    scheme = QScheme(bits=4, symmetric=False, granularity="per_channel", axis=1)
    qt = quantize_tensor(x, scheme)
    for c in range(7):
        ref = quantize_tensor(x[:, c], QScheme(bits=4, symmetric=False))
        assert torch.equal(qt.data[:, c], ref.data)
        assert_similar(qt.scale[c], ref.scale)


def test_per_group_matches_manual_reshape():
    x = random_tensor(4, 12, seed=4)
    scheme = QScheme(bits=4, symmetric=False, granularity="per_group", group_size=4)
    qt = quantize_tensor(x, scheme)
    ref = quantize_tensor(
        x.reshape(12, 4), QScheme(bits=4, symmetric=False, granularity="per_channel", axis=0)
    )
    assert torch.equal(qt.data, ref.data.reshape(4, 12))
    assert_similar(qt.scale.reshape(-1), ref.scale)


def test_given_qparams_and_nbytes():
    x = random_tensor(8, 16, seed=5)
    scheme = QScheme(bits=4, symmetric=False, granularity="per_group", group_size=8)
    first = quantize_tensor(x, scheme)
    again = quantize_tensor(x, scheme, scale=first.scale, zero_point=first.zero_point)
    assert torch.equal(first.data, again.data)
    # 128 values * 4 bits = 64 bytes, + 16 fp32 scales + 16 int32 zero-points
    assert first.nbytes == 64 + 16 * 4 + 16 * 4
    assert quantize_tensor(x, QScheme(bits=8)).nbytes == 128 + 4


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 19])
def test_chunked_quantize_is_exact(monkeypatch, chunk):
    x = random_tensor(9, 40, seed=11, dist="laplace")
    for scheme in (
        QScheme(bits=4, symmetric=False, granularity="per_group", group_size=8),
        QScheme(bits=8, symmetric=False),
        QScheme(bits=3, granularity="per_channel", axis=1),
    ):
        reference = quantize_tensor(x, scheme)
        monkeypatch.setattr(qtensor_module, "CHUNK_ELEMENTS", chunk)
        chunked = quantize_tensor(x, scheme)
        monkeypatch.undo()
        assert torch.equal(chunked.data, reference.data)
        # the formula, unchunked: clip(round(x / s) + z, qmin, qmax)
        b = to_blocks(x, scheme)
        q = (
            torch.round(b / reference.scale.unsqueeze(-1)) + reference.zero_point.unsqueeze(-1)
        ).clamp(scheme.qmin, scheme.qmax)
        assert torch.equal(from_blocks(q, scheme, x.shape).to(chunked.data.dtype), chunked.data)


def test_a_parameter_that_requires_grad_quantizes_on_every_thread_count():
    weight = torch.nn.Parameter(torch.randn(64, 128))
    scheme = QScheme(bits=4, symmetric=False, granularity="per_group", group_size=64)
    for threads in (1, 2):
        with torch_threads(threads):
            qt = quantize_tensor(weight, scheme)
            assert not qt.data.requires_grad
            assert (qt.dequantize() - weight.detach()).abs().max() <= qt.scale.max()
