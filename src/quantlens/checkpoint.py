"""The checkpoint format: ``model.safetensors`` + ``quantlens.json`` in one directory.

``model.safetensors`` holds every tensor of the quantized model's state dict as a plain
tensor: quantized torch tensors are split into their integer representation, scales and
zero-points; tuples (PyTorch's packed parameters) into their elements. ``quantlens.json``
holds the format version, the method config, how to rebuild the float skeleton, and the
non-tensor state entries. Nothing is pickled.

Writes are atomic: the directory is written under a temporary name beside the target and
renamed into place, so an interrupted save never leaves a checkpoint that looks whole.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from quantlens import zoo
from quantlens.errors import CheckpointError, InputError, error_line, require
from quantlens.methods.base import QuantSummary

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "quantlens.json"
_SEP = "::"
_METADATA = _SEP + "metadata"  # per-module state-dict versions (quantized modules need them)
_REQUIRED = {"method": str, "config": dict, "state": dict}  # quantlens.json entries load cannot do without
_KIND_NAMES = {str: "a string", dict: "an object"}


# --- state dict <-> plain tensors ---------------------------------------------------------


def flatten_state(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a state dict into plain tensors and a JSON description of everything else."""
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    for key, value in state.items():
        layout[key] = _flatten_value(key, value, tensors)
    metadata = getattr(state, "_metadata", None)
    if metadata:
        layout[_METADATA] = {"kind": "metadata", "value": {k: dict(v) for k, v in metadata.items()}}
    return tensors, layout


def _flatten_value(key: str, value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor) and value.is_quantized:
        entry: dict[str, Any] = {"kind": "qtensor", "dtype": str(value.dtype).removeprefix("torch.")}
        tensors[key + _SEP + "int"] = value.int_repr().contiguous()
        if value.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            entry.update(scale=value.q_scale(), zero_point=value.q_zero_point())
        else:
            tensors[key + _SEP + "scales"] = value.q_per_channel_scales().contiguous()
            tensors[key + _SEP + "zero_points"] = value.q_per_channel_zero_points().contiguous()
            entry["axis"] = value.q_per_channel_axis()
        return entry
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().contiguous()
        return {"kind": "tensor"}
    if isinstance(value, (tuple, list)):
        items = [_flatten_value(f"{key}{_SEP}{i}", v, tensors) for i, v in enumerate(value)]
        return {"kind": type(value).__name__, "items": items}
    if isinstance(value, torch.dtype):
        return {"kind": "dtype", "value": str(value).removeprefix("torch.")}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"kind": "value", "value": value}
    raise CheckpointError(
        f"state entry {key!r} is a {type(value).__name__}, which the checkpoint format cannot store "
        "without pickle; give the module a state dict of tensors"
    )


def unflatten_state(
    tensors: Mapping[str, torch.Tensor], layout: Mapping[str, Any], *, origin: str | os.PathLike = META_FILE
) -> dict[str, Any]:
    """Inverse of :func:`flatten_state`; a malformed entry raises CheckpointError naming
    ``origin`` (the ``quantlens.json`` the layout came from) and the entry."""
    state = OrderedDict()
    for key, entry in layout.items():
        if key == _METADATA:
            continue
        try:
            state[key] = _unflatten_value(key, entry, tensors)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(
                f"{origin}: state entry {key!r} is malformed ({type(exc).__name__}: {error_line(exc)}); "
                "the file was edited or is from another version, save the checkpoint again"
            ) from exc
    if _METADATA in layout:
        try:
            state._metadata = OrderedDict(layout[_METADATA]["value"])  # read by load_state_dict
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{origin}: the state metadata entry is malformed; save the checkpoint again") from exc
    return state


def _unflatten_value(key: str, entry: Mapping, tensors: Mapping[str, torch.Tensor]) -> Any:
    kind = entry["kind"]
    if kind == "tensor":
        return _tensor(tensors, key)
    if kind == "qtensor":
        ints = _tensor(tensors, key + _SEP + "int")
        if "axis" in entry:
            scales = _tensor(tensors, key + _SEP + "scales")
            zero_points = _tensor(tensors, key + _SEP + "zero_points")
            return torch._make_per_channel_quantized_tensor(ints, scales, zero_points, entry["axis"])
        return torch._make_per_tensor_quantized_tensor(ints, entry["scale"], entry["zero_point"])
    if kind in ("tuple", "list"):
        items = [_unflatten_value(f"{key}{_SEP}{i}", e, tensors) for i, e in enumerate(entry["items"])]
        return tuple(items) if kind == "tuple" else items
    if kind == "dtype":
        return getattr(torch, entry["value"])
    if kind == "value":
        return entry["value"]
    raise CheckpointError(f"state entry {key!r} has unknown kind {kind!r}; was it written by a newer quantlens?")


def _tensor(tensors: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in tensors:
        raise CheckpointError(f"{WEIGHTS_FILE} has no tensor {key!r}; the file is incomplete or from another model")
    return tensors[key]


# --- skeleton sources ----------------------------------------------------------------------
#
# A checkpoint names how to rebuild its float skeleton, and loading must not run code the
# file chose. Two kinds rebuild without the caller's opt-in because every call they make
# is fixed here: a Hugging Face source builds a transformers model class from a config
# (``AutoConfig.for_model``; no remote code), a zoo source calls ``zoo.load_model`` with a
# registered zoo name. A factory source (``module:function`` with keyword arguments) runs
# whatever it names, so it needs ``trust_code=True``.


def source_of(model: torch.nn.Module) -> dict | None:
    """How to rebuild ``model``'s float skeleton: a recorded source, or its HF config."""
    source = getattr(model, "quantlens_source", None)
    if source is not None:
        return dict(source)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict") and type(model).__module__.startswith("transformers."):
        return {"kind": "hf", "class": type(model).__name__, "config": config.to_dict()}
    return None


def build_skeleton(source: Mapping, *, trust_code: bool = False, origin: str | os.PathLike = META_FILE) -> torch.nn.Module:
    """A float model built from a recorded source (see :func:`source_of`).

    Args:
        source: the ``"source"`` entry of ``quantlens.json``.
        trust_code: allow a ``"factory"`` source, which imports and calls the function it
            names with the keyword arguments it gives. Hugging Face and zoo sources never
            need it.
        origin: the file the source came from, named in error messages.

    Returns:
        The float skeleton (its weights are placeholders until a state dict is loaded).

    Raises:
        CheckpointError: the source is malformed, names a model this installation cannot
            build, or is a factory and ``trust_code`` is False.
    """
    if not isinstance(source, Mapping):
        raise CheckpointError(f"{origin}: 'source' is a {type(source).__name__}, not an object; pass model=skeleton")
    if source.get("zoo") is not None:
        model = _zoo_skeleton(source, origin)
    elif source.get("kind") == "hf":
        model = _hf_skeleton(source, origin)
    elif source.get("kind") == "factory":
        model = _factory_skeleton(source, origin, trust_code)
    else:
        raise CheckpointError(
            f"{origin} does not say how to rebuild its model (source kind {source.get('kind')!r}); pass model=skeleton"
        )
    return model


def _zoo_skeleton(source: Mapping, origin) -> torch.nn.Module:
    name = source["zoo"]
    if not isinstance(name, str) or name not in zoo.list_models():
        raise CheckpointError(
            f"{origin} names zoo model {name!r}, which this quantlens does not have "
            f"(zoo models: {', '.join(zoo.list_models())}); upgrade quantlens or pass model=skeleton"
        )
    return zoo.load_model(name, pretrained=False)


def _hf_skeleton(source: Mapping, origin) -> torch.nn.Module:
    transformers = require("transformers", "hf")
    config_dict = source.get("config")
    class_name = source.get("class")
    if not isinstance(config_dict, Mapping) or not isinstance(class_name, str):
        raise CheckpointError(f"{origin}: a Hugging Face source needs 'class' (a name) and 'config' (an object)")
    config_dict = dict(config_dict)
    model_type = config_dict.pop("model_type", None)
    try:
        config = transformers.AutoConfig.for_model(model_type, **config_dict)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(
            f"{origin}: this transformers ({transformers.__version__}) cannot build a config of model_type "
            f"{model_type!r} ({error_line(exc)}); install a transformers that knows it, or pass model=skeleton"
        ) from exc
    model_cls = getattr(transformers, class_name, None)
    if not (isinstance(model_cls, type) and issubclass(model_cls, transformers.PreTrainedModel)
            and model_cls.__module__.startswith("transformers.models.")):
        raise CheckpointError(
            f"{origin}: {class_name!r} is not a model class of this transformers ({transformers.__version__}); "
            "install a version that has it, or pass model=skeleton"
        )
    try:
        model = model_cls(config)
    except Exception as exc:  # a config the class rejects: any error type transformers raises
        raise CheckpointError(
            f"{origin}: transformers could not build {class_name} from the recorded config "
            f"({type(exc).__name__}: {error_line(exc)}); pass model=skeleton"
        ) from exc
    return model.eval()


def _factory_skeleton(source: Mapping, origin, trust_code: bool) -> torch.nn.Module:
    path, kwargs = source.get("path"), source.get("kwargs", {})
    if not isinstance(path, str) or ":" not in path or not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{origin}: a factory source needs 'path' ('module:function') and 'kwargs' (an object)")
    if not trust_code:
        raise CheckpointError(
            f"{origin} rebuilds its model by calling {path!r}, which runs code the checkpoint names; "
            "pass trust_code=True (quantlens CLI: --trust-code) if you trust it, or pass model= with a skeleton you built"
        )
    model = call_factory(path, kwargs, CheckpointError, name=f"the model factory {path!r}",
                         hint="pass model=skeleton", origin=origin)
    if not isinstance(model, torch.nn.Module):
        raise CheckpointError(
            f"{origin}: rebuilding the model gave a {type(model).__name__}, not a torch.nn.Module; pass model=skeleton"
        )
    model.quantlens_source = dict(source)
    return model


def call_factory(path: str, kwargs: Mapping, error_cls: type[Exception], *, name: str, hint: str,
                 origin: str | os.PathLike | None = None) -> Any:
    """Import the function ``path`` names (``"package.module:function"``) and call it with
    ``kwargs``; a failure to import it or any error the call raises becomes one ``error_cls``
    on one line.

    Args:
        path: ``"package.module:function"``.
        kwargs: the keyword arguments of the call.
        error_cls: the error raised on failure (a :class:`~quantlens.errors.QuantlensError`).
        name: how the message names the call (``"make()"``, ``"the model factory 'pkg:make'"``).
        hint: what to do about it, the end of the message.
        origin: the file the path came from, the start of the message.

    Returns:
        Whatever the function returns.

    Example:
        >>> call_factory("torch.nn:Identity", {}, InputError, name="torch.nn:Identity()", hint="give another")
        Identity()
    """
    where = f"{origin}: " if origin is not None else ""
    module_name, _, attr = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise error_cls(f"{where}cannot import {path!r} ({type(exc).__name__}: {error_line(exc)}); {hint}") from exc
    try:
        return factory(**kwargs)
    except Exception as exc:  # the factory is user code: any error it raises
        raise error_cls(f"{where}calling {name} failed ({type(exc).__name__}: {error_line(exc)}); {hint}") from exc


# --- files -------------------------------------------------------------------------------


def write(directory: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write a checkpoint directory atomically; replace an existing checkpoint there."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} exists and is not a directory; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not (target / META_FILE).exists():
        raise InputError(f"{target} is a non-empty directory that is not a quantlens checkpoint; choose an empty or new path")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old = None
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(staging / WEIGHTS_FILE))
        (staging / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(staging, target)
    except BaseException:
        if old is not None and old.exists() and not target.exists():
            os.replace(old, target)  # the previous checkpoint goes back where it was
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def read_meta(directory: str | os.PathLike) -> dict:
    """``quantlens.json`` of a checkpoint directory, validated; errors name the file."""
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(f"{root} is not a directory; give the folder ql.save wrote")
    meta_path, weights_path = root / META_FILE, root / WEIGHTS_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path} is missing; the checkpoint is incomplete, save it again")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{meta_path} is not valid JSON ({exc}); the file is truncated or corrupt") from exc
    if not isinstance(meta, dict) or meta.get("format") != "quantlens":
        raise CheckpointError(f"{meta_path} is not a quantlens checkpoint description")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path} has format version {version!r}, newer than this quantlens reads ({FORMAT_VERSION}); upgrade quantlens"
        )
    for key, kind in _REQUIRED.items():
        if not isinstance(meta.get(key), kind):
            found = "no" if key not in meta else f"a {type(meta[key]).__name__} as its"
            raise CheckpointError(
                f"{meta_path} has {found} {key!r} entry (expected {_KIND_NAMES[kind]}); the file is incomplete or "
                "was edited, save the checkpoint again"
            )
    source = meta.get("source")
    if source is not None and not isinstance(source, dict):
        raise CheckpointError(f"{meta_path}: 'source' is a {type(source).__name__}, not an object; save the checkpoint again")
    return meta


def read(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and validate a checkpoint directory; errors name the file and the problem."""
    meta = read_meta(directory)
    weights_path = Path(directory) / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path} cannot be read ({exc}); the file is truncated or corrupt") from exc
    return tensors, meta


def read_summary(meta: Mapping) -> QuantSummary | None:
    """The summary ``ql.quantize`` wrote into ``quantlens.json`` (what was quantized, what
    was left in float and why), or None where the file records none or one this quantlens
    cannot read (edited, or from another version)."""
    data = meta.get("summary")
    if not isinstance(data, Mapping):
        return None
    try:
        return QuantSummary.from_dict(data)
    except (TypeError, AttributeError, ValueError):
        return None
