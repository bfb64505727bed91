"""Turning a name or a path into data: :func:`load_data`.

A data spec is a zoo data set name (``digits``, ``sentences``, ...), a ``.pt`` / ``.pth`` or
``.npz`` file of tensors, a ``.csv`` file of numbers, a ``.txt`` file of text (one sample a
line), or an image folder (one sub-folder per class; needs torchvision). Nothing is
unpickled: ``.pt`` files are read with ``torch.load(weights_only=True)``, ``.npz`` with
``allow_pickle=False``.

Example:
    >>> data = ql.load_data("digits")
    >>> qm = ql.quantize(model, ql.Static(), calib_data=data.calib)
    >>> report = ql.compare(model, ["dynamic", "w4"], data=data.test, calib_data=data.calib)
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from quantlens import zoo
from quantlens.errors import (
    InputError,
    MissingDependencyError,
    UnknownNameError,
    check_number,
    error_line,
    require,
    shorten,
)
from quantlens.files import path_kind
from quantlens.sources.models import ModelSource

INPUT_KEYS = ("inputs", "input", "x", "data", "images")
LABEL_KEYS = ("labels", "label", "y", "targets")
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class LoadedData:
    """Evaluation data plus, when the source has them, calibration and training splits;
    each in a form every ``data`` argument of quantlens accepts.

    Attributes:
        test: the evaluation data: a tensor or ``(inputs, labels)`` pair of tensors (a
            ``.pt`` / ``.npz`` / ``.csv`` file, whole), a list of batches (a zoo data set, a
            tokenized text file), a DataLoader (an image folder), or a list of strings (a
            text file without a tokenizer: not yet data a model runs on).
        calib: the calibration split (zoo data sets that have one), else None.
        train: the training split (zoo data sets that have one), else None.
        description: one line naming the source, for reports.
        task: ``"classification"``, ``"sequence-classification"``, ``"embedding"`` (zoo
            data sets), ``"text"`` (a text file), or None (a file: its labels, if any, say).
    """

    test: Any
    calib: Any | None = None
    train: Any | None = None
    description: str = ""
    task: str | None = None


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


_FILE_READERS: dict[str, Callable[[Path], object]] = {
    ".pt": load_pt,
    ".pth": load_pt,
    ".npz": load_npz,
    ".csv": load_csv,
}


def load_data(
    spec: str | os.PathLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tokenizer: Callable | None = None,
    max_length: int = 128,
) -> LoadedData:
    """The data ``spec`` names (see the module docstring).

    Args:
        spec: a zoo data set name, a ``.pt`` / ``.pth`` / ``.npz`` / ``.csv`` / ``.txt`` file,
            or an image folder.
        batch_size: samples per batch of a zoo data set, a text file or an image folder
            (tensor files come whole: every ``data`` argument cuts them into batches of 64).
        tokenizer: for a ``.txt`` file, the tokenizer that turns its lines into token
            batches (see :func:`load_text`); without one, ``test`` is the list of lines.
        max_length: tokens per line at most, with a tokenizer.

    Returns:
        A :class:`LoadedData`; zoo data sets fill ``calib`` and ``train`` where they have them.

    Raises:
        UnknownNameError: neither a file/folder nor a zoo data set (lists the zoo names).
        InputError: a file that cannot be read, or of another type (the message says which).
        MissingDependencyError: an image folder without torchvision installed.

    Example:
        >>> ql.load_data("digits").test[0][0].shape
        torch.Size([64, 1, 8, 8])
        >>> x, y = ql.load_data("data.csv").test       # a 'label' column, the rest inputs
        >>> batches = ql.load_data("calib.txt", tokenizer=tokenizer).test
    """
    check_number("batch_size", batch_size, 1, integer=True)
    spec = os.fspath(spec)
    path = Path(spec)
    kind = path_kind(path)
    if kind == "file":
        suffix = path.suffix.lower()
        if suffix == ".txt":
            text = load_text(path, tokenizer, batch_size=batch_size, max_length=max_length)
            task = "text" if tokenizer is None else None
            return LoadedData(text, description=f"text file {path}", task=task)
        reader = _FILE_READERS.get(suffix)
        if reader is None:
            raise InputError(
                f"{shorten(path)}: unsupported data file type {shorten(path.suffix, 20)!r}; "
                "give a .pt, .npz or .csv of numbers, or a .txt of text"
            )
        return LoadedData(reader(path), description=str(path))
    if kind == "dir":
        return LoadedData(load_image_folder(path, batch_size), description=f"image folder {path}")
    if spec not in zoo.list_datasets():
        raise UnknownNameError(
            f"unknown data {shorten(repr(spec))}: not a file or folder, and not a zoo data set; "
            f"valid zoo data sets: {', '.join(zoo.list_datasets())} "
            "(or a .pt/.npz/.csv/.txt file, or an image folder)"
        )
    test = zoo.load_dataset(spec, "test")
    splits = {}
    for split in ("calib", "train"):
        try:
            splits[split] = zoo.load_dataset(spec, split).batches(batch_size)
        except UnknownNameError:
            splits[split] = None
    return LoadedData(
        test.batches(batch_size),
        splits["calib"],
        splits["train"],
        description=f"zoo data set {spec!r} ({len(test)} test samples)",
        task=test.task,
    )


def require_tensors(loaded: LoadedData, spec: str) -> LoadedData:
    """``loaded``, unless it is text that no tokenizer turned into tensors.

    Raises:
        InputError: naming ``spec`` and what to give instead.
    """
    if loaded.task == "text":
        raise InputError(
            f"{shorten(spec)} is a text file, which needs a tokenizer; give a zoo data set, a "
            ".pt/.npz/.csv file of numbers, or an image folder (Python: tokenizer=...)"
        )
    return loaded


def load_data_for(
    source: ModelSource | None,
    data: str | os.PathLike | None = None,
    *,
    calib_data: str | os.PathLike | None = None,
    train_data: str | os.PathLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tokenizer: Callable | None = None,
) -> LoadedData:
    """The data to run a model on: ``data`` (default: the zoo data set ``source`` runs on),
    its calibration and training splits replaced by ``calib_data`` / ``train_data`` (their
    ``test`` data) where given.

    Args:
        source: the model (:func:`~quantlens.sources.resolve_model`), or None.
        data, calib_data, train_data: data specs (see :func:`load_data`).
        batch_size, tokenizer: as :func:`load_data` takes them.

    Returns:
        A :class:`LoadedData` of tensors.

    Raises:
        InputError: no ``data`` for a model that is not from the zoo, or a text file
            without a tokenizer; and what :func:`load_data` raises.

    Example:
        >>> loaded = load_data_for(ql.resolve_model("digits-cnn"), calib_data="calib.npz")
        >>> loaded.description
        "zoo data set 'digits' (450 test samples)"
    """
    spec = data or (source.data if source is not None else None)
    if not spec:
        raise InputError(
            "give data for a model that is not from the zoo (a zoo data set, a .pt/.npz/.csv "
            "file or an image folder)"
        )
    options = {"batch_size": batch_size, "tokenizer": tokenizer}
    loaded = require_tensors(load_data(spec, **options), os.fspath(spec))
    calib, train = loaded.calib, loaded.train
    if calib_data:
        calib = require_tensors(load_data(calib_data, **options), os.fspath(calib_data)).test
    if train_data:
        train = require_tensors(load_data(train_data, **options), os.fspath(train_data)).test
    return LoadedData(loaded.test, calib, train, loaded.description, loaded.task)
