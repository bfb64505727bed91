"""The tutorial's worked example, by hand: a 2x2 linear layer in signed 8-bit, s = 0.2, z = 0."""

import torch
from helpers import assert_similar

from quantlens.core import QScheme, fake_quantize, quantize_tensor

X = torch.tensor([1.5, -2.3])
W = torch.tensor([[0.8, -0.5], [1.2, 0.3]])
B = torch.tensor([0.1, -0.2])
S = torch.tensor(0.2)
Z = torch.tensor(0)
SCHEME = QScheme(bits=8)  # signed, symmetric


def test_float_output():
    assert_similar(W @ X + B, torch.tensor([2.45, 0.91]))


def test_quantized_levels():
    q_x = quantize_tensor(X, SCHEME, scale=S, zero_point=Z).data
    q_w = quantize_tensor(W, SCHEME, scale=S, zero_point=Z).data
    assert q_x.dtype == torch.int8
    assert q_x.tolist() == [8, -12]
    assert q_w.tolist() == [[4, -2], [6, 2]]


def test_integer_path():
    q_x = quantize_tensor(X, SCHEME, scale=S).data.to(torch.int32)
    q_w = quantize_tensor(W, SCHEME, scale=S).data.to(torch.int32)
    acc = q_w @ q_x  # int32 accumulation
    assert acc.tolist() == [56, 24]
    out_scale = S * S
    assert abs(out_scale.item() - 0.04) < 1e-8
    y_hat = acc.float() * out_scale + B
    assert_similar(y_hat, torch.tensor([2.34, 0.76]), atol=1e-5)


def test_fake_quantized_float_path():
    x_fq = fake_quantize(X, S, Z, SCHEME)
    w_fq = fake_quantize(W, S, Z, SCHEME)
    assert_similar(x_fq, torch.tensor([1.6, -2.4]))
    assert_similar(w_fq, torch.tensor([[0.8, -0.4], [1.2, 0.4]]))
    assert_similar(w_fq @ x_fq + B, torch.tensor([2.34, 0.76]), atol=1e-5)


def test_dequantize_matches_fake_quantize():
    qt = quantize_tensor(W, SCHEME, scale=S)
    assert_similar(qt.dequantize(), fake_quantize(W, S, Z, SCHEME))
    error = (W @ X + B) - torch.tensor([2.34, 0.76])
    assert_similar(error, torch.tensor([0.11, 0.15]), atol=1e-5)
