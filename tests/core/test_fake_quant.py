import pytest
import torch
from helpers import assert_similar, random_tensor

from quantlens.core import QScheme, compute_qparams, fake_quantize, quantize_tensor
from quantlens.errors import InputError


def test_forward_equals_quantize_dequantize():
    x = random_tensor(6, 32, seed=1)
    scheme = QScheme(bits=4, symmetric=False, granularity="per_group", group_size=8)
    qt = quantize_tensor(x, scheme)
    assert_similar(fake_quantize(x, qt.scale, qt.zero_point, scheme), qt.dequantize(), atol=1e-6)


def test_ste_gradient_one_inside_zero_outside():
    scheme = QScheme(bits=4, symmetric=False)  # levels 0..15
    scale, zp = torch.tensor(0.1), torch.tensor(8)  # representable: [-0.8, 0.7]
    x = torch.tensor([-2.0, -0.9, -0.8, -0.3, 0.0, 0.42, 0.7, 0.76, 3.0], requires_grad=True)
    y = fake_quantize(x, scale, zp, scheme)
    y.backward(torch.arange(1.0, 10.0))
    expected_inside = torch.tensor([0, 0, 1, 1, 1, 1, 1, 0, 0], dtype=torch.float32)
    assert_similar(x.grad, expected_inside * torch.arange(1.0, 10.0))
    assert_similar(y.detach()[[0, -1]], torch.tensor([-0.8, 0.7]))


def test_ste_per_channel_gradcheck_shape():
    x = random_tensor(3, 4, seed=2).requires_grad_()
    scheme = QScheme(bits=8, granularity="per_channel", axis=0)
    lo, hi = torch.aminmax(x.detach(), dim=1)
    scale, zp = compute_qparams(lo, hi, scheme)
    fake_quantize(x, scale * 0.5, zp, scheme).sum().backward()  # half the range: some clipped
    assert x.grad.shape == x.shape
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}
    assert 0 < x.grad.sum() < x.numel()


def test_codebook_rejected():
    with pytest.raises(InputError, match="uniform schemes only"):
        fake_quantize(
            torch.zeros(4), torch.tensor(1.0), torch.tensor(0), QScheme(bits=4, codebook="nf4")
        )


def test_runs_under_torch_compile():
    # aot_eager traces forward and backward through dynamo + AOTAutograd in ~3 s; the
    # inductor backend compiles C++ and takes ~20 s here, too slow for a unit test.
    scheme = QScheme(bits=4, symmetric=False)
    compiled = torch.compile(
        lambda x, s, z: fake_quantize(x, s, z, scheme), backend="aot_eager", fullgraph=True
    )
    x = torch.linspace(-1, 1, 9, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y = compiled(x, torch.tensor(0.1), torch.tensor(8))
    y_ref = fake_quantize(x_ref, torch.tensor(0.1), torch.tensor(8), scheme)
    assert_similar(y, y_ref)
    y.sum().backward()
    y_ref.sum().backward()
    assert_similar(x.grad, x_ref.grad)
