"""safetensors written and read with their SHA-256: every dtype and shape round-trips, the
safetensors library reads ours and we read its, and a hostile header is one CheckpointError."""

import hashlib
import json
import struct

import pytest
import torch
from helpers import generator
from safetensors.torch import load_file, save_file

from quantlens.errors import CheckpointError
from quantlens.files import read_tensors, write_tensors
from quantlens.files.tensorfile import DigestMismatchError


def _tensors():
    g = generator(0)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "bf16": torch.randn(7, generator=g).bfloat16(),
        "f16": torch.randn(2, 3, generator=g).half(),
        "f64": torch.randn(4, generator=g).double(),
        "i8": torch.randint(-128, 127, (9,), dtype=torch.int8, generator=g),
        "u8": torch.randint(0, 255, (3, 3), dtype=torch.uint8, generator=g),
        "i64": torch.arange(5),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "strided": torch.randn(6, 4, generator=g).t(),
    }


def test_every_dtype_round_trips_and_the_digest_is_the_files(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = _tensors()
    digest = write_tensors(path, tensors)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    back, found = read_tensors(path, sha256=digest)
    assert found == digest
    for name, t in tensors.items():
        assert (
            back[name].dtype == t.dtype
            and back[name].shape == t.shape
            and torch.equal(back[name], t)
        ), name
    theirs = load_file(str(path))
    assert all(torch.equal(theirs[k], t) for k, t in tensors.items())


def test_a_file_the_safetensors_library_wrote_reads_back(tmp_path):
    path = tmp_path / "theirs.safetensors"
    tensors = {
        "odd": torch.arange(3, dtype=torch.uint8),
        "f32": torch.randn(5),
        "i16": torch.arange(3, dtype=torch.int16),
    }
    save_file(tensors, str(path))
    back, _ = read_tensors(path)
    assert all(torch.equal(back[k], t) for k, t in tensors.items())


def test_a_changed_byte_is_a_digest_mismatch(tmp_path):
    path = tmp_path / "t.safetensors"
    digest = write_tensors(path, {"a": torch.ones(100)})
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(
        DigestMismatchError, match=r"t\.safetensors does not match the SHA-256"
    ) as info:
        read_tensors(path, sha256=digest)
    assert info.value.found == hashlib.sha256(bytes(data)).hexdigest()


def _with_header(path, header: dict, data: bytes = b"\0" * 16):
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


@pytest.mark.parametrize(
    "header, why",
    [
        (
            {"a": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}},
            "points outside the file",
        ),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, "wrong size"),
        ({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, "negative dimension"),
        ({"a": {"dtype": "X9", "shape": [4], "data_offsets": [0, 16]}}, "malformed"),
        ({"a": "not an entry"}, "malformed"),
    ],
)
def test_a_hostile_header_is_one_error(tmp_path, header, why):
    path = tmp_path / "h.safetensors"
    _with_header(path, header)
    with pytest.raises(CheckpointError, match=why):
        read_tensors(path)


def test_a_header_longer_than_the_file_or_not_json_is_one_error(tmp_path):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(CheckpointError, match="header of"):
        read_tensors(path)
    path.write_bytes(struct.pack("<Q", 4) + b"[[[[")
    with pytest.raises(CheckpointError, match="header is not JSON"):
        read_tensors(path)
    path.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="shorter than its header"):
        read_tensors(path)
