"""The compiled dynamic int8 op (nn/csrc/dynamic_int8.cpp): the same codes and the same exact
int32 sums as the pure-PyTorch int_mm path, its output bit for bit; the kernel path that
automatic dispatch takes; the loader's fallback when the library is missing; the builder."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import assert_similar, random_tensor, torch_threads
from torch import nn

from quantlens.errors import BackendError, SchemeError
from quantlens.nn import build_kernels
from quantlens.nn.act_quant import activation_int8
from quantlens.nn.dynamic_linear import DynamicLinear
from quantlens.nn.kernels import cpu_features
from quantlens.nn.kernels.compiled import (
    BUILD_COMMAND,
    SOURCE,
    CompiledOps,
    default_ops,
    library_name,
    set_default_ops,
)

# (M, K, N): M = 1, odd K and N, K and N off the 16-lane vector width, MiniLM's widths
SHAPES = [(1, 2, 1), (1, 384, 384), (7, 31, 5), (33, 130, 17), (5, 17, 3), (64, 100, 127)]
HAVE_COMPILER = shutil.which(os.environ.get("CXX", "g++")) is not None


@pytest.fixture(scope="session")
def ops() -> CompiledOps:
    """The loaded library: the installed one, else built once for the session (~10 s)."""
    loaded = default_ops()
    if loaded.load():
        return loaded
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler to build the compiled int8 kernel")
    build_kernels.build()
    fresh = CompiledOps()
    assert fresh.load(), fresh.reason
    set_default_ops(fresh)
    return fresh


def _inputs(m: int, k: int, seed: int = 0) -> torch.Tensor:
    x = random_tensor(m, k, seed=seed, scale=3.0)
    if m >= 3:  # rows that are all positive, all negative, all zero
        x[0] = x[0].abs() + 0.5
        x[1] = -x[1].abs() - 0.5
        x[2] = 0.0
    return x


def _expected(x: torch.Tensor, layer: DynamicLinear) -> torch.Tensor:
    """The int_mm path's math with the GEMM done in int64: exact sums, the same epilogue."""
    q, s = activation_int8(x, layer.per_token)
    acc = q.long() @ layer.weight.long().t()  # (M, N) exact
    y = acc.float() * layer.weight_scale
    return y.mul_(s) if layer.bias is None else torch.addcmul(layer.bias, y, s)


def _layer(k: int, n: int, bias: bool = True, per_token: bool = True) -> DynamicLinear:
    torch.manual_seed(k * 1000 + n)
    activations = "per_token" if per_token else "per_tensor"
    return DynamicLinear.from_float(nn.Linear(k, n, bias=bias), activations=activations)


@pytest.mark.parametrize("per_token", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_codes_are_the_python_codes(ops, shape, per_token):
    m, k, _ = shape
    x = _inputs(m, k)
    q, s = ops.quantize_int8(x, per_token)
    q_ref, s_ref = activation_int8(x, per_token)
    assert q.dtype == torch.int8 and torch.equal(q, q_ref)
    assert torch.equal(s, s_ref)


@pytest.mark.parametrize("per_token", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_output_is_the_int_mm_paths_bit_for_bit(ops, shape, bias, per_token):
    m, k, n = shape
    layer = _layer(k, n, bias, per_token)
    x = _inputs(m, k, seed=1)
    y = ops.dynamic_linear_int8(x, layer.weight.t(), layer.weight_scale, layer.bias, per_token)
    assert y.shape == (m, n) and y.dtype == torch.float32
    assert torch.equal(y, _expected(x, layer))
    if m > 1:  # torch._int_mm itself returns wrong sums for some 1-row, 2-wide inputs
        layer.kernel = "int_mm"
        assert_similar(y, layer(x), atol=1e-6, rtol=1e-6)


def test_non_contiguous_inputs(ops):
    layer = _layer(40, 24)
    base = random_tensor(48, 80, seed=2)
    for x in (base[::2, :40], base[:, ::2], base[:, :40].t().contiguous().t(), base.t()[:40, :40]):
        y = ops.dynamic_linear_int8(x, layer.weight.t(), layer.weight_scale, layer.bias, True)
        assert torch.equal(y, _expected(x.contiguous(), layer))


def test_a_nan_in_the_input_gives_nan_where_the_python_path_does(ops):
    layer = _layer(37, 9)
    x = _inputs(4, 37, seed=8)
    x[3, 20] = float("nan")
    for per_token in (True, False):
        y = ops.dynamic_linear_int8(x, layer.weight.t(), layer.weight_scale, None, per_token)
        nan_rows = y.isnan().all(dim=1).tolist()
        assert nan_rows == ([False, False, False, True] if per_token else [True] * 4)
        if per_token:
            layer_no_bias = _layer(37, 9, bias=False)
            assert torch.equal(y[:3], _expected(x[:3], layer_no_bias))


def test_rows_split_over_two_threads_give_the_one_thread_result(ops):
    layer = _layer(64, 48)
    x = _inputs(700, 64, seed=3)  # more rows than one parallel chunk holds
    args = (layer.weight.t(), layer.weight_scale, layer.bias)
    one = ops.dynamic_linear_int8(x, *args, True)
    with torch_threads(2):
        for per_token in (True, False):
            two = ops.dynamic_linear_int8(x, *args, per_token)
            assert torch.equal(two, one if per_token else _expected(x, _layer(64, 48, True, False)))


def test_layer_runs_it_when_forced_and_auto_takes_it_on_vnni_or_amx(ops):
    layer = _layer(48, 40)
    x = random_tensor(2, 5, 48, seed=4)
    layer.kernel = "compiled"
    y = layer(x)
    layer.kernel = "int_mm"
    assert_similar(y, layer(x), atol=1e-6, rtol=1e-6)
    layer.kernel = "auto"
    fast = bool({"vnni", "amx"} & cpu_features())
    assert (layer.kernel_for(x.reshape(-1, 48)).name == "compiled") is fast
    assert layer(x.reshape(-1, 48).double()).dtype == torch.float64


def test_under_autograd_it_runs_the_aten_ops(ops):
    layer = _layer(32, 16)
    layer.kernel = "compiled"
    x = random_tensor(4, 32, seed=5).requires_grad_()
    y = layer(x)
    assert y.grad_fn is not None
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    with torch.no_grad():
        assert torch.equal(layer(x), y.detach())


def test_a_traced_layer_holds_only_aten_ops(ops):
    layer = _layer(48, 40)
    layer.kernel = "compiled"
    x = random_tensor(6, 48, seed=7)
    with torch.no_grad():
        y = layer(x)  # prepares the kernel state before the trace records anything
        traced = torch.jit.trace(layer, x)
        assert "quantlens::" not in str(traced.graph) and "aten::_int_mm" in str(traced.graph)
        assert torch.equal(traced(x), y)


def test_missing_library_logs_one_line_and_int_mm_runs(tmp_path, caplog):
    missing = CompiledOps(tmp_path / "missing.so")
    previous = set_default_ops(missing)
    try:
        with caplog.at_level(logging.WARNING, logger="quantlens.nn.kernels.compiled"):
            assert not missing.load()
            assert not missing.load()
            layer = _layer(48, 40)
            x = random_tensor(3, 48, seed=6)
            if {"vnni", "amx"} & cpu_features():
                assert layer.kernel_for(x).name == "int_mm"
            y = layer(x)
            layer.kernel = "compiled"
            with pytest.raises(SchemeError, match="build_kernels"):
                layer(x)
    finally:
        set_default_ops(previous)
    records = [r for r in caplog.records if r.name == "quantlens.nn.kernels.compiled"]
    assert len(records) == 1
    assert BUILD_COMMAND in records[0].getMessage()
    assert "\n" not in records[0].getMessage()
    assert torch.equal(y, _expected(x, _layer(48, 40)))


def test_a_file_that_is_not_a_library_is_not_loaded(tmp_path, caplog):
    bad = tmp_path / library_name()
    bad.write_bytes(b"not a shared object")
    ops = CompiledOps(bad)
    with caplog.at_level(logging.WARNING, logger="quantlens.nn.kernels.compiled"):
        assert not ops.load()
    assert "failed to load" in (ops.reason or "")
    with pytest.raises(RuntimeError, match="not loaded"):
        ops.dynamic_linear_int8(torch.zeros(1, 2))


def test_library_name_follows_the_source(tmp_path):
    changed = tmp_path / SOURCE.name
    changed.write_text(SOURCE.read_text() + "\n// changed\n")
    name = library_name()
    assert name.startswith(f"dynamic_int8-torch{torch.__version__.replace('+', '_')}-")
    assert library_name(changed) != name and library_name() == name


def test_builder_without_a_compiler_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    with pytest.raises(BackendError, match="no C\\+\\+ compiler"):
        build_kernels.build(tmp_path)
    assert build_kernels.main(["--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "PyTorch paths" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_COMPILER, reason="no C++ compiler")
def test_builder_builds_a_loadable_library_into_a_folder(tmp_path):
    path = build_kernels.build(tmp_path / "out")
    assert path.parent == tmp_path / "out" and path.name == library_name()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    check = (
        "import sys, torch; torch.ops.load_library(sys.argv[1]); "
        "q, s = torch.ops.quantlens.quantize_int8(torch.tensor([[-1.0, 0.5, 2.0]]), True); "
        "print(q.tolist(), round(s.item(), 6))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check, str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-500:]
    # s = 3 / 126, z = rne(1 / s) = 42: codes rne(x / s + 42) - 42
    assert out.stdout.split("]]")[0] == "[[-42, 21, 84"
