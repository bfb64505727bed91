import pytest
import torch
from helpers import assert_similar, random_tensor

from quantlens.core import QScheme, quantize_tensor
from quantlens.core.codebooks import kmeans_levels, log2_levels, nf4_levels
from quantlens.core.metrics import mse
from quantlens.errors import SchemeError

# Table from QLoRA (Dettmers et al., 2023), appendix / bitsandbytes' NF4 constant.
QLORA_NF4 = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
]


def test_nf4_levels_match_qlora():
    levels = nf4_levels()
    assert levels.shape == (16,)
    assert torch.allclose(
        levels.double(), torch.tensor(QLORA_NF4, dtype=torch.float64), atol=1e-6, rtol=0
    )


def test_nf4_beats_uniform_int4_on_gaussian_weights():
    w = random_tensor(256, 256, seed=7)
    for gran in [
        {"granularity": "per_channel", "axis": 0},
        {"granularity": "per_group", "group_size": 64},
    ]:
        nf4 = quantize_tensor(w, QScheme(bits=4, codebook="nf4", **gran)).dequantize()
        int4 = quantize_tensor(w, QScheme(bits=4, symmetric=True, **gran)).dequantize()
        assert mse(w, nf4) < 0.8 * mse(w, int4), gran


def test_nf4_round_trip_of_levels():
    scheme = QScheme(bits=4, codebook="nf4")
    levels = nf4_levels() * 3.0
    qt = quantize_tensor(levels, scheme)
    assert qt.data.tolist() == list(range(16))
    assert torch.allclose(qt.dequantize(), levels, atol=1e-6)


def test_log2_levels_and_quantization():
    assert log2_levels(3).tolist() == [-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0]
    x = torch.tensor([8.0, 4.1, -2.0, 1.2, 0.0, 0.3])
    qt = quantize_tensor(x, QScheme(bits=3, codebook="log2"))
    assert qt.dequantize().tolist() == [8.0, 4.0, -2.0, 2.0, 0.0, 0.0]
    with pytest.raises(SchemeError, match="bits >= 2"):
        quantize_tensor(x, QScheme(bits=1, symmetric=False, codebook="log2"))


def test_kmeans_fits_clusters_exactly():
    centers = torch.tensor([-3.0, -1.0, 0.5, 2.0])
    x = centers.repeat(50)
    qt = quantize_tensor(x, QScheme(bits=2, codebook="kmeans"))
    assert_similar(qt.dequantize(), x, atol=1e-5)
    levels = kmeans_levels(torch.tensor([[0.0, 0.0, 1.0, 1.0, 5.0]]), k=3)
    assert torch.allclose(levels, torch.tensor([[0.0, 1.0, 5.0]]))


def test_kmeans_per_channel_beats_uniform():
    w = random_tensor(16, 512, seed=3, dist="laplace")
    km = quantize_tensor(w, QScheme(bits=3, codebook="kmeans", granularity="per_channel", axis=0))
    assert km.codebook.shape == (16, 8)
    uni = quantize_tensor(w, QScheme(bits=3, symmetric=False, granularity="per_channel", axis=0))
    assert mse(w, km.dequantize()) < mse(w, uni.dequantize())


def test_codebook_with_clipping_observer():
    from helpers import heavy_tailed

    from quantlens.core.observers import get_observer

    x = heavy_tailed(1 << 16, seed=2)
    scheme = QScheme(bits=4, codebook="nf4")
    plain = quantize_tensor(x, scheme)
    clipped = quantize_tensor(x, scheme, observer=get_observer("percentile", percentile=99.9))
    assert clipped.scale < plain.scale
    assert mse(x, clipped.dequantize()) < mse(x, plain.dequantize())
