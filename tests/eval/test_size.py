import torch
from torch import nn

from quantlens.eval.size import (
    checkpoint_bytes,
    directory_bytes,
    measure_size,
    memory_bytes,
    save_for_size,
)


def test_memory_bytes_counts_parameters_and_buffers():
    model = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2))
    nbytes, elems = memory_bytes(model)
    # Linear 4*2+2, BN weight/bias/mean/var 4*2 float32 + num_batches_tracked int64
    assert elems == 10 + 8 + 1
    assert nbytes == (10 + 8) * 4 + 8


def test_tied_weights_count_once():
    a, b = nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False)
    b.weight = a.weight
    assert memory_bytes(nn.Sequential(a, b)) == (256, 64)


def test_float_checkpoint_is_a_safetensors_file_of_the_state_dict(tmp_path, digits_model):
    saved = save_for_size(digits_model, tmp_path / "f")
    assert (saved / "model.safetensors").is_file() and (saved / "source.json").is_file()
    weights = (saved / "model.safetensors").stat().st_size
    assert weights >= memory_bytes(digits_model)[0]
    assert directory_bytes(saved) == checkpoint_bytes(digits_model)


def test_quantized_model_is_smaller_on_disk_and_in_memory(digits_model, digits_static):
    f, q = measure_size(digits_model), measure_size(digits_static)
    # int8 weights: about 4x fewer weight bytes; the checkpoint also carries scales and JSON
    assert q.memory_bytes < f.memory_bytes / 3
    assert q.disk_bytes < f.disk_bytes / 2
    assert q.num_parameters > 0.9 * f.num_parameters - 1000  # packed weights are counted


def test_packed_params_are_counted():
    qlin = torch.ao.nn.quantized.Linear(64, 32)
    nbytes, elems = memory_bytes(qlin)
    assert elems >= 64 * 32
    assert nbytes >= 64 * 32  # int8 weights live in _packed_params, not in parameters()
    assert sum(p.numel() for p in qlin.parameters()) == 0
