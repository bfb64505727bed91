"""Reading data files into tensors: ``.pt`` / ``.pth`` (``torch.load(weights_only=True)``,
never unpickled), ``.npz`` (``allow_pickle=False``), ``.csv`` of numbers, ``.txt`` lines
(tokenized when given a tokenizer) and image folders (torchvision). :func:`load_data` picks
the reader by the file's suffix.

Example:
    >>> x, y = load_csv(Path("data.csv"))   # a 'label' column, the rest inputs
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import torch

from quantlens.core.data import DEFAULT_BATCH_SIZE
from quantlens.errors import (
    InputError,
    MissingDependencyError,
    error_line,
    require,
    shorten,
)

INPUT_KEYS = ("inputs", "input", "x", "data", "images")
LABEL_KEYS = ("labels", "label", "y", "targets")


def _pick(mapping, keys, what: str, path: Path, required: bool):
    for key in keys:
        if key in mapping:
            return mapping[key]
    if required:
        raise InputError(
            f"{path} has no {what} entry (looked for {', '.join(keys)}; "
            f"found {', '.join(map(str, mapping))}); "
            f"save a dict like {{'inputs': x, 'labels': y}}"
        )
    return None


def _pair(inputs, labels) -> object:
    if not isinstance(inputs, torch.Tensor):
        raise InputError(f"inputs must be a tensor, got {type(inputs).__name__}")
    if labels is None:
        return inputs
    labels = torch.as_tensor(labels)
    if labels.shape[0] != inputs.shape[0]:
        raise InputError(
            f"{inputs.shape[0]} inputs but {labels.shape[0]} labels; give one label per input"
        )
    return (inputs, labels.long() if not labels.is_floating_point() else labels)


def load_pt(path: Path) -> object:
    """A ``.pt`` file holding a tensor, an ``(inputs, labels)`` tuple, or a dict of tensors."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(
            f"{path} cannot be read as tensors ({type(exc).__name__}: {error_line(exc, 160)}); "
            "save it with torch.save({'inputs': x, 'labels': y}, path)"
        ) from exc
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return _pair(obj[0], obj[1])
    if isinstance(obj, dict):
        return _pair(
            _pick(obj, INPUT_KEYS, "inputs", path, True),
            _pick(obj, LABEL_KEYS, "labels", path, False),
        )
    raise InputError(
        f"{path} holds a {type(obj).__name__}; save a tensor, (inputs, labels), "
        "or {'inputs': ..., 'labels': ...}"
    )


def load_npz(path: Path) -> object:
    """A ``.npz`` with an ``inputs`` (or ``x``) array and optional ``labels`` (or ``y``)."""
    import numpy as np

    try:
        arrays = dict(np.load(path, allow_pickle=False))
    except (ValueError, OSError) as exc:
        raise InputError(f"{path} is not a readable .npz of arrays ({exc})") from exc
    inputs = _tensor(_pick(arrays, INPUT_KEYS, "inputs", path, True), "inputs", path)
    if inputs.dtype == torch.float64:
        inputs = inputs.float()
    labels = _pick(arrays, LABEL_KEYS, "labels", path, False)
    return _pair(inputs, None if labels is None else _tensor(labels, "labels", path))


def _tensor(array, what: str, path: Path) -> torch.Tensor:
    """A numpy array as a tensor; strings, objects and other dtypes torch lacks are refused."""
    try:
        return torch.from_numpy(array)
    except TypeError:
        raise InputError(
            f"{shorten(path)}: the {what} array has dtype {array.dtype}, which is not numbers; "
            "save numeric arrays (float32 inputs, integer labels)"
        ) from None


def load_image_folder(path: Path, batch_size: int = 64):
    """An ImageFolder (one sub-folder per class) as a DataLoader of (images, labels).

    Raises:
        MissingDependencyError: torchvision is not installed (one line naming the extra).
        InputError: torchvision cannot be imported, or the folder holds no class sub-folders
            with images.
    """
    try:
        require("torchvision", "vision")
        from torchvision import datasets, transforms
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"{path} is a folder, read as an image folder, which needs torchvision "
            "(not installed); "
            "install it with: pip install 'quantlens[vision]' (or give a .pt/.npz file of tensors)"
        ) from exc
    except Exception as exc:  # an installed torchvision built for another torch fails on import
        raise InputError(
            f"torchvision is installed but cannot be imported ({type(exc).__name__}: "
            f"{error_line(exc, 120)}); reinstall it to match torch "
            "with: pip install 'quantlens[vision]'"
        ) from exc
    try:
        dataset = datasets.ImageFolder(str(path), transform=transforms.ToTensor())
    except OSError as exc:
        raise InputError(
            f"{path} is not an image folder ({error_line(exc, 160)}); give one "
            "sub-folder of images per class, or a .pt/.npz file of tensors"
        ) from exc
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)


def load_csv(path: Path) -> object:
    """A ``.csv`` of numbers, one sample a row, as float32 inputs ``(N, columns)``: with a
    header row, a column named ``labels`` / ``label`` / ``y`` / ``targets`` gives the labels
    (integers: class indices) and the others the inputs; without one, every column is input.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{shorten(path)} cannot be read as CSV ({error_line(exc)})") from exc
    header = rows[0] if rows and not all(_is_number(c) for c in rows[0]) else None
    body = rows[1:] if header is not None else rows
    if not body:
        raise InputError(f"{shorten(path)} has no rows of numbers; give one sample a row")
    width = len(body[0])
    for i, row in enumerate(body):
        bad = next((c for c in row if not _is_number(c)), None)
        if len(row) != width or bad is not None:
            what = f"{len(row)} columns, not {width}" if bad is None else f"{bad.strip()!r}"
            raise InputError(
                f"{shorten(path)}: row {i + 1 + (header is not None)} has {what}; give a CSV "
                "of numbers (one header row at most), the same columns in every row"
            )
    table = torch.tensor([[float(c) for c in row] for row in body], dtype=torch.float64)
    names = [c.strip().lower() for c in header] if header is not None else []
    label_col = next((names.index(k) for k in LABEL_KEYS if k in names), None)
    if label_col is None:
        return table.float()
    labels = table[:, label_col]
    inputs = torch.cat([table[:, :label_col], table[:, label_col + 1 :]], dim=1).float()
    return _pair(inputs, labels.long() if torch.equal(labels, labels.round()) else labels.float())


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def load_text(
    path: Path,
    tokenizer: Callable | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = 128,
) -> list:
    """A text file, one sample a line (blank lines skipped).

    Args:
        path: the file (UTF-8).
        tokenizer: a Hugging Face tokenizer (or any callable taking a list of strings and
            ``padding``, ``truncation``, ``max_length``, ``return_tensors`` like one).
        batch_size: lines per batch.
        max_length: tokens per line at most (longer lines are cut).

    Returns:
        With a tokenizer, a list of dicts of ``(batch, length)`` tensors (each batch padded to
        its longest line), the form ``ql.quantize`` and ``ql.compare`` take for language
        models; without one, the list of lines (strings: tokenize them yourself).
    """
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{shorten(path)} cannot be read as UTF-8 text ({error_line(exc)})"
        ) from exc
    lines = [line for line in lines if line]
    if not lines:
        raise InputError(f"{shorten(path)} holds no text; give one sample a line")
    if tokenizer is None:
        return lines
    batches = []
    for start in range(0, len(lines), batch_size):
        encoded = tokenizer(
            lines[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        batches.append({k: v for k, v in dict(encoded).items() if isinstance(v, torch.Tensor)})
    return batches
