"""Model size: bytes of the saved checkpoint on disk, and bytes held in memory.

The two differ and both matter: the checkpoint is what you ship (quantized weights packed,
plus scales and zero-points), the in-memory figure is what the loaded model keeps resident
for its weights and buffers (PyTorch's int8 modules hold their weights in packed
``_packed_params`` that do not show up in ``model.parameters()``; they are counted here).
Neither includes activations, which are measured by :mod:`quantlens.eval.memory`.

Example:
    >>> s = measure_size(model)
    >>> s.disk_bytes, s.memory_bytes
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from quantlens import api, checkpoint
from quantlens.methods.base import state_bytes
from quantlens.sources import SOURCE_FILE


@dataclass(frozen=True)
class SizeResult:
    """Sizes of one model.

    Attributes:
        disk_bytes: bytes of the checkpoint directory (``ql.save`` for a quantized model,
            a safetensors file of the state dict for a float model).
        memory_bytes: bytes of parameters, buffers and packed quantized weights in memory.
        num_parameters: elements in those tensors (weights of packed modules included).
    """

    disk_bytes: int
    memory_bytes: int
    num_parameters: int

    @property
    def disk_mb(self) -> float:
        return self.disk_bytes / 1e6

    @property
    def memory_mb(self) -> float:
        return self.memory_bytes / 1e6


def memory_bytes(model: nn.Module) -> tuple[int, int]:
    """Bytes and element count of a model's weights and buffers as held in memory.

    Counts every state-dict entry (parameters, buffers, and the weights PyTorch's quantized
    modules keep in packed params), tied tensors once.

    Returns:
        ``(bytes, elements)``.

    Example:
        >>> memory_bytes(torch.nn.Linear(4, 2))
        (40, 10)
    """
    return state_bytes(model)


def directory_bytes(path: str | os.PathLike) -> int:
    """Total bytes of the files under ``path`` (a file or a directory)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def save_for_size(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``model`` the way it would be shipped and return the directory.

    A quantized model (one returned by ``ql.quantize``/``ql.convert``) is saved with
    ``ql.save``; a float model as ``model.safetensors`` of its state dict (tied tensors
    written once) plus a ``source.json`` saying how to rebuild it when known.
    """
    directory = Path(directory)
    if getattr(model, "quantlens_config", None) is not None:
        return api.save(model, directory)
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors, _ = checkpoint.flatten_state(model.state_dict())
    unique: dict[str, torch.Tensor] = {}
    seen: set = set()
    for key, t in tensors.items():
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if t.numel() and ptr in seen:
            continue
        seen.add(ptr)
        unique[key] = t.detach().contiguous().clone()
    save_file(unique, str(directory / checkpoint.WEIGHTS_FILE))
    source = checkpoint.source_of(model)
    if source is not None:
        import json

        (directory / SOURCE_FILE).write_text(json.dumps(source, default=str))
    return directory


def checkpoint_bytes(model: nn.Module) -> int:
    """Bytes on disk of the model's checkpoint (see :func:`save_for_size`), via a temp dir.

    Example:
        >>> checkpoint_bytes(ql.quantize(model, ql.Dynamic())) < checkpoint_bytes(model)
        True
    """
    with tempfile.TemporaryDirectory(prefix="quantlens-size-") as tmp:
        return directory_bytes(save_for_size(model, Path(tmp) / "model"))


def measure_size(model: nn.Module, *, saved_dir: str | os.PathLike | None = None) -> SizeResult:
    """Disk and in-memory size of ``model``.

    Args:
        model: a float or quantized model.
        saved_dir: a directory the model was already saved to by :func:`save_for_size`
            (saves writing it twice); default: save to a temporary directory.

    Returns:
        A :class:`SizeResult`.

    Example:
        >>> measure_size(model).disk_mb
    """
    disk = directory_bytes(saved_dir) if saved_dir is not None else checkpoint_bytes(model)
    mem, elems = memory_bytes(model)
    return SizeResult(disk_bytes=disk, memory_bytes=mem, num_parameters=elems)
