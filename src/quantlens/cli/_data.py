"""DATA arguments of the CLI: a zoo data set name, a ``.pt`` / ``.npz`` file of tensors, or
an image folder (with torchvision). Nothing is unpickled: ``.pt`` files are read with
``torch.load(weights_only=True)``, ``.npz`` with ``allow_pickle=False``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from quantlens import zoo
from quantlens.cli._args import path_kind, shorten
from quantlens.errors import (
    InputError,
    MissingDependencyError,
    UnknownNameError,
    error_line,
    require,
)

INPUT_KEYS = ("inputs", "input", "x", "data", "images")
LABEL_KEYS = ("labels", "label", "y", "targets")


@dataclass
class LoadedData:
    """Evaluation data plus, when the source has them, calibration and training splits."""

    test: object
    calib: object | None = None
    train: object | None = None
    description: str = ""


def _pick(mapping, keys, what: str, path: Path, required: bool):
    for key in keys:
        if key in mapping:
            return mapping[key]
    if required:
        raise InputError(
            f"{path} has no {what} entry (looked for {', '.join(keys)}; found "
            f"{', '.join(map(str, mapping))}); save a dict like {{'inputs': x, 'labels': y}}"
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
        f"{path} holds a {type(obj).__name__}; save a tensor, (inputs, labels), or {{'inputs': "
        "..., 'labels': ...}"
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
            f"{path} is a folder, read as an image folder, which needs torchvision (not "
            "installed); install it with: pip install 'quantlens[vision]' (or give a .pt/.npz file "
            "of tensors)"
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


def load_data(spec: str) -> LoadedData:
    """Resolve a DATA argument (see the module docstring).

    Raises:
        UnknownNameError: neither a file/folder nor a zoo data set (lists the zoo names).
    """
    path = Path(spec)
    kind = path_kind(path)
    if kind == "file":
        loader = {".pt": load_pt, ".pth": load_pt, ".npz": load_npz}.get(path.suffix.lower())
        if loader is None:
            raise InputError(
                f"{shorten(path)}: unsupported data file type {shorten(path.suffix, 20)!r}; "
                "give a .pt or .npz of tensors"
            )
        return LoadedData(loader(path), description=str(path))
    if kind == "dir":
        return LoadedData(load_image_folder(path), description=f"image folder {path}")
    if spec not in zoo.list_datasets():
        raise UnknownNameError(
            f"unknown data {shorten(repr(spec))}: not a file or folder, and not a zoo data set; "
            f"valid zoo data sets: {', '.join(zoo.list_datasets())} (or a .pt/.npz file, or an "
            "image folder)"
        )
    test = zoo.load_dataset(spec, "test")
    splits = {}
    for split in ("calib", "train"):
        try:
            splits[split] = zoo.load_dataset(spec, split)
        except UnknownNameError:
            splits[split] = None
    as_data = lambda d: None if d is None else d.batches(64)
    return LoadedData(
        as_data(test),
        as_data(splits["calib"]),
        as_data(splits["train"]),
        description=f"zoo data set {spec!r} ({len(test)} test samples)",
    )
