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

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantlens import zoo
from quantlens.core.data import DEFAULT_BATCH_SIZE
from quantlens.errors import (
    InputError,
    UnknownNameError,
    check_number,
    shorten,
)
from quantlens.files import path_kind
from quantlens.sources.models import ModelSource
from quantlens.sources.readers import load_csv, load_image_folder, load_npz, load_pt, load_text


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

    Example:
        >>> loaded = ql.load_data("digits")
        >>> loaded.task, len(loaded.calib)
        ('classification', 4)
    """

    test: Any
    calib: Any | None = None
    train: Any | None = None
    description: str = ""
    task: str | None = None


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
