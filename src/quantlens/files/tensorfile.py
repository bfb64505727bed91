"""safetensors files written and read with their SHA-256 computed on the way.

The layout is the safetensors format (an 8-byte little-endian header length, a JSON header
naming each tensor's dtype, shape and byte range, then the raw bytes), so the files open
with the ``safetensors`` library too. Writing streams each tensor's bytes once, hashing
them as they go; reading reads the file once into one buffer, hashing each chunk as it
arrives, and builds the tensors as views of that buffer (nothing is read twice). The header
is checked before any tensor is built: a truncated or edited file is an error naming the
file, never a crash or a tensor of garbage.

Example:
    >>> digest = write_tensors("w.safetensors", {"a": torch.ones(3)})
    >>> tensors = read_tensors("w.safetensors", sha256=digest)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

from quantlens.errors import CheckpointError

__all__ = ["DigestMismatchError", "read_tensors", "write_tensors"]

_CHUNK = 1 << 22  # 4 MiB
_MAX_HEADER = 100 << 20  # what the safetensors library accepts
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "C64": torch.complex64,
}
for _name, _attr in (
    ("U16", "uint16"),
    ("U32", "uint32"),
    ("U64", "uint64"),
    ("F8_E4M3", "float8_e4m3fn"),
    ("F8_E5M2", "float8_e5m2"),
):
    if hasattr(torch, _attr):
        _DTYPES[_name] = getattr(torch, _attr)
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


class DigestMismatchError(CheckpointError):
    """A file's SHA-256 is not the one recorded for it; ``found`` is the digest it has."""

    def __init__(self, message: str, found: str) -> None:
        super().__init__(message)
        self.found = found


def _raw_bytes(t: torch.Tensor) -> memoryview:
    flat = t.detach().reshape(-1).contiguous()
    if flat.numel() == 0:
        return memoryview(b"")
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")


def write_tensors(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Write ``tensors`` as a safetensors file, flushed to disk, and return its SHA-256.

    Args:
        path: the file to create (overwritten if it exists).
        tensors: name -> CPU tensor (any layout; written contiguous, little-endian).
        metadata: optional string -> string entries for the header's ``__metadata__``.

    Returns:
        The hex SHA-256 of the bytes written.

    Raises:
        CheckpointError: a tensor's dtype has no safetensors name.
        OSError: the write failed (disk full, file size limit, permissions).
    """
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    order = sorted(
        tensors, key=lambda k: (-tensors[k].element_size(), k)
    )  # keeps every tensor aligned
    offset = 0
    for key in order:
        t = tensors[key]
        if t.dtype not in _NAMES:
            raise CheckpointError(
                f"tensor {key!r} has dtype {t.dtype}, which a safetensors file cannot hold"
            )
        size = t.numel() * t.element_size()
        header[key] = {
            "dtype": _NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for part in (struct.pack("<Q", len(head)), head):
            digest.update(part)
            f.write(part)
        for key in order:
            data = _raw_bytes(tensors[key].cpu())
            digest.update(data)
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def read_tensors(
    path: str | os.PathLike, *, sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """Read a safetensors file once, checking its SHA-256 against ``sha256`` when given.

    Args:
        path: the file.
        sha256: the expected hex digest (None: not checked, only computed).

    Returns:
        ``(tensors, digest)``: name -> tensor (views of one buffer holding the file), and the
        file's hex SHA-256.

    Raises:
        DigestMismatchError: the digest differs (message: "does not match").
        CheckpointError: the file is
            truncated or its header is malformed; the message names the file.
        OSError: the file cannot be opened.
    """
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        buffer = bytearray(size)
        view, filled = memoryview(buffer), 0
        while filled < size:
            n = f.readinto(view[filled : filled + _CHUNK])
            if not n:
                break
            digest.update(view[filled : filled + n])
            filled += n
    found = digest.hexdigest()
    if sha256 is not None and found != sha256:
        raise DigestMismatchError(
            f"{path} does not match the SHA-256 its quantlens.json records (the file changed "
            "after it was saved: corrupt or edited); save the checkpoint again",
            found,
        )
    if filled < size:
        raise CheckpointError(f"{path} shrank while it was read; read it again once it is written")
    return _parse(path, buffer), found


def _parse(path: Path, buffer: bytearray) -> dict[str, torch.Tensor]:
    def bad(what: str) -> CheckpointError:
        return CheckpointError(
            f"{path} is not a readable safetensors file ({what}); the file is truncated or corrupt"
        )

    if len(buffer) < 8:
        raise bad(f"{len(buffer)} bytes, shorter than its header")
    (length,) = struct.unpack("<Q", buffer[:8])
    if length > min(_MAX_HEADER, len(buffer) - 8):
        raise bad(f"header of {length} bytes in a file of {len(buffer)}")
    try:
        header = json.loads(bytes(buffer[8 : 8 + length]))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad(f"header is not JSON: {type(exc).__name__}") from exc
    if not isinstance(header, dict):
        raise bad("header is not an object")
    start, end = 8 + length, len(buffer)
    tensors: dict[str, torch.Tensor] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        tensors[key] = _tensor(buffer, start, end, key, entry, bad)
    return tensors


def _tensor(buffer: bytearray, start: int, end: int, key: str, entry, bad) -> torch.Tensor:
    try:
        dtype = _DTYPES[entry["dtype"]]
        shape = [int(d) for d in entry["shape"]]
        begin, stop = (int(o) for o in entry["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"entry {key!r} is malformed") from exc
    numel = 1
    for d in shape:
        if d < 0:
            raise bad(f"entry {key!r} has a negative dimension")
        numel *= d
    itemsize = torch.empty((), dtype=dtype).element_size()
    if not 0 <= begin <= stop <= end - start or stop - begin != numel * itemsize:
        raise bad(f"entry {key!r} points outside the file or has the wrong size")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    offset = start + begin
    if offset % itemsize:  # unaligned (another writer's order): copy to an aligned buffer
        return torch.frombuffer(
            bytearray(buffer[offset : offset + stop - begin]), dtype=dtype
        ).reshape(shape)
    return torch.frombuffer(buffer, dtype=dtype, count=numel, offset=offset).reshape(shape)
