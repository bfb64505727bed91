"""The conformance suite every weight-only layer runs.

A new layer gets it by subclassing :class:`LayerConformance` in a ``test_*.py`` file with a
``Test`` prefix and filling in ``make_float``, ``make_input``, ``quantize`` and
``reference``; the tests below then check storage, state dicts, safetensors round trips
and cache invalidation for every scheme in ``SCHEMES``.
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from quantlens import QScheme, quantize_tensor

SCHEMES = {
    f"b{bits}-{gran}-{'sym' if sym else 'asym'}": QScheme(
        bits=bits, symmetric=sym, granularity=gran, group_size=64 if gran == "per_group" else None
    )
    for bits in (8, 4, 3, 2)
    for gran in ("per_channel", "per_group")
    for sym in (True, False)
}
SCHEMES["nf4-g64"] = QScheme(bits=4, codebook="nf4", granularity="per_group", group_size=64)
SCHEMES["kmeans3-channel"] = QScheme(bits=3, codebook="kmeans", granularity="per_channel")
SCHEMES["b8-tensor"] = QScheme(bits=8, granularity="per_tensor")
SCHEMES["b4-tensor-asym"] = QScheme(bits=4, symmetric=False, granularity="per_tensor")
SCHEMES["b4-g256-asym"] = QScheme(bits=4, symmetric=False, granularity="per_group", group_size=256)

_QTENSORS: dict = {}
PLAIN_DTYPES = {torch.uint8, torch.int8, torch.float32, torch.bfloat16, torch.float16}


def scheme_params():
    return pytest.mark.parametrize("scheme", list(SCHEMES.values()), ids=list(SCHEMES))


class LayerConformance:
    """Base class; subclasses set ``qcls`` and implement the four hooks."""

    qcls: type

    def make_float(self, seed: int = 0) -> torch.nn.Module:
        raise NotImplementedError

    def make_input(self, layer, batch: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
        raise NotImplementedError

    def reference(self, layer, x: torch.Tensor) -> torch.Tensor:
        """The dequantize-then-compute output."""
        raise NotImplementedError

    def quantize(self, scheme: QScheme, seed: int = 0):
        """``(float layer, QTensor of its weight, quantized layer)``; the QTensor is computed
        once per (layer class, scheme, seed) and shared (k-means takes a while)."""
        fl = self.make_float(seed)
        key = (self.qcls.__name__, scheme, seed)
        if key not in _QTENSORS:
            _QTENSORS[key] = quantize_tensor(fl.weight.detach(), scheme)
        qt = _QTENSORS[key]
        return fl, qt, self.qcls.from_float(fl, qt)

    # --- storage ----------------------------------------------------------------------

    @scheme_params()
    def test_packed_bytes_and_qweight_round_trip(self, scheme):
        _, qt, layer = self.quantize(scheme)
        assert layer.weight_packed.dtype == torch.uint8
        assert layer.weight_packed.numel() == math.ceil(qt.data.numel() * qt.scheme.bits / 8)
        back = layer.qweight()
        assert torch.equal(back.data, qt.data)
        assert torch.equal(back.scale, qt.scale)
        assert torch.equal(back.dequantize(), qt.dequantize())
        assert torch.equal(layer.dequantized_weight(), qt.dequantize())
        assert qt.scheme.describe() in repr(layer)

    @scheme_params()
    def test_state_dict_holds_plain_tensors_only(self, scheme):
        _, _, layer = self.quantize(scheme)
        x = self.make_input(layer, 4, torch.float32)
        layer(x)  # fills the caches
        state = layer.state_dict()
        for key, value in state.items():
            assert type(value) is torch.Tensor or isinstance(value, torch.nn.Parameter), key
            assert not value.is_quantized and value.dtype in PLAIN_DTYPES, (key, value.dtype)
        expected = {"weight_packed", "scale"}
        expected |= {"zero_point"} if scheme.codebook is None and not scheme.symmetric else set()
        expected |= {"codebook"} if scheme.codebook else set()
        expected |= {"bias"} if getattr(layer, "bias", None) is not None else set()
        assert set(state) == expected

    @scheme_params()
    def test_safetensors_round_trip_is_bit_identical(self, scheme, tmp_path):
        _, _, layer = self.quantize(scheme)
        path = tmp_path / "layer.safetensors"
        save_file(layer.state_dict(), str(path))
        loaded = self.qcls.from_config(layer.config())
        loaded.load_state_dict(load_file(str(path)))
        for dtype in (torch.float32, torch.bfloat16):
            x = self.make_input(layer, 8, dtype)
            assert torch.equal(loaded(x), layer(x))

    @pytest.mark.parametrize(
        "scheme",
        [SCHEMES["b4-per_group-asym"], SCHEMES["b8-per_channel-sym"], SCHEMES["nf4-g64"]],
        ids=["b4g", "b8c", "nf4"],
    )
    def test_caches_refresh_after_load_state_dict(self, scheme):
        _, _, a = self.quantize(scheme, seed=1)
        _, _, b = self.quantize(scheme, seed=2)
        x = self.make_input(a, 8, torch.float32)
        y_b = b(x)
        a(x)  # populate a's caches with its own weight
        a.load_state_dict(b.state_dict())
        assert torch.equal(a(x), y_b)
        assert torch.equal(self.reference(a, x), self.reference(b, x))

    def test_model_dtype_cast_keeps_float32_scales(self):
        _, _, layer = self.quantize(SCHEMES["b4-per_group-asym"])
        w = layer.dequantized_weight()
        layer.to(torch.bfloat16)
        assert layer.scale.dtype == torch.float32
        assert torch.equal(layer.dequantized_weight(), w)

    def test_empty_layer_from_config_has_right_shapes(self):
        _, _, layer = self.quantize(SCHEMES["b3-per_group-asym"])
        empty = self.qcls.from_config(layer.config())
        for key, value in layer.state_dict().items():
            got = empty.state_dict()[key]
            assert got.shape == value.shape and got.dtype == value.dtype, key
