"""How a model records where it came from, and how that record rebuilds it: the
``"source"`` entry of a checkpoint's ``quantlens.json`` (and of a float folder's
``source.json``), and calling a ``module:function`` or ``path/to/file.py:function``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from quantlens import zoo
from quantlens.errors import CheckpointError, UntrustedCodeError, error_line, require, shorten

ORIGIN = "quantlens.json"  # where a recorded source usually comes from, for messages
WEIGHTS_FILE = "model.safetensors"  # the tensors of a checkpoint or of a float folder
SOURCE_FILE = "source.json"  # how a float folder's model is rebuilt

__all__ = [
    "SOURCE_FILE",
    "WEIGHTS_FILE",
    "build_skeleton",
    "call_factory",
    "import_factory",
    "load_float_folder",
    "source_of",
]


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
    if (
        config is not None
        and hasattr(config, "to_dict")
        and type(model).__module__.startswith("transformers.")
    ):
        return {"kind": "hf", "class": type(model).__name__, "config": config.to_dict()}
    return None


def build_skeleton(
    source: Mapping, *, trust_code: bool = False, origin: str | os.PathLike = ORIGIN
) -> torch.nn.Module:
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
        CheckpointError: the source is malformed or names a model this installation cannot
            build.
        UntrustedCodeError: the source is a factory and ``trust_code`` is False.

    Example:
        >>> build_skeleton(zoo.load_model("digits-cnn").quantlens_source)  # no trust needed
    """
    if not isinstance(source, Mapping):
        raise CheckpointError(
            f"{origin}: 'source' is a {type(source).__name__}, not an object; pass model=skeleton"
        )
    if source.get("zoo") is not None:
        model = _zoo_skeleton(source, origin)
    elif source.get("kind") == "hf":
        model = _hf_skeleton(source, origin)
    elif source.get("kind") == "factory":
        model = _factory_skeleton(source, origin, trust_code)
    else:
        raise CheckpointError(
            f"{origin} does not say how to rebuild its model (source kind {source.get('kind')!r}); "
            "pass model=skeleton"
        )
    return model


def load_float_folder(folder: str | os.PathLike, *, trust_code: bool = False) -> torch.nn.Module:
    """A float model saved as ``model.safetensors`` (its state dict) and ``source.json`` (its
    recorded source): the skeleton built from the source, the weights loaded into it.

    Args:
        folder: the folder (``quantlens.eval.size.save_for_size`` writes one).
        trust_code: as :func:`build_skeleton` takes it.

    Returns:
        The model, in eval mode.

    Raises:
        CheckpointError: a file is missing or unreadable, or the source cannot be built.
        UntrustedCodeError: the source is a factory and ``trust_code`` is False.

    Example:
        >>> model = load_float_folder(save_for_size(zoo.load_model("digits-cnn"), "f/"))
    """
    from safetensors.torch import load_file

    root = Path(folder)
    try:
        source = json.loads((root / SOURCE_FILE).read_text(encoding="utf-8"))
        state = load_file(str(root / WEIGHTS_FILE))
    except (OSError, ValueError) as exc:  # a missing file, bad JSON or UTF-8
        raise CheckpointError(f"{shorten(root)} cannot be read ({error_line(exc)})") from exc
    except Exception as exc:  # safetensors' SafetensorError is no OSError
        raise CheckpointError(
            f"{shorten(root / WEIGHTS_FILE)} is not a safetensors file ({error_line(exc)})"
        ) from exc
    model = build_skeleton(source, trust_code=trust_code, origin=root / SOURCE_FILE)
    model.load_state_dict(state, strict=False)
    return model.eval()


def _zoo_skeleton(source: Mapping, origin) -> torch.nn.Module:
    name = source["zoo"]
    if not isinstance(name, str) or name not in zoo.list_models():
        raise CheckpointError(
            f"{origin} names zoo model {name!r}, which this quantlens does not have "
            f"(zoo models: {', '.join(zoo.list_models())}); upgrade quantlens or pass "
            "model=skeleton"
        )
    return zoo.load_model(name, pretrained=False)


def _hf_skeleton(source: Mapping, origin) -> torch.nn.Module:
    transformers = require("transformers", "hf")
    config_dict = source.get("config")
    class_name = source.get("class")
    if not isinstance(config_dict, Mapping) or not isinstance(class_name, str):
        raise CheckpointError(
            f"{origin}: a Hugging Face source needs 'class' (a name) and 'config' (an object)"
        )
    config_dict = dict(config_dict)
    model_type = config_dict.pop("model_type", None)
    try:
        config = transformers.AutoConfig.for_model(model_type, **config_dict)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(
            f"{origin}: this transformers ({transformers.__version__}) cannot build a config of "
            f"model_type {model_type!r} ({error_line(exc)}); install a transformers that knows it, "
            "or pass model=skeleton"
        ) from exc
    model_cls = getattr(transformers, class_name, None)
    if not (
        isinstance(model_cls, type)
        and issubclass(model_cls, transformers.PreTrainedModel)
        and model_cls.__module__.startswith("transformers.models.")
    ):
        raise CheckpointError(
            f"{origin}: {class_name!r} is not a model class of this transformers "
            f"({transformers.__version__}); install a version that has it, or pass model=skeleton"
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
        raise CheckpointError(
            f"{origin}: a factory source needs 'path' ('module:function') and 'kwargs' (an object)"
        )
    if not trust_code:
        raise UntrustedCodeError(
            f"{origin} rebuilds its model by calling {path!r}, which runs code the checkpoint "
            "names; pass trust_code=True (quantlens CLI: --trust-code) if you trust it, or pass "
            "model= with a skeleton you built"
        )
    model = call_factory(
        path,
        kwargs,
        CheckpointError,
        name=f"the model factory {path!r}",
        hint="pass model=skeleton",
        origin=origin,
    )
    if not isinstance(model, torch.nn.Module):
        raise CheckpointError(
            f"{origin}: rebuilding the model gave a {type(model).__name__}, not a torch.nn.Module; "
            "pass model=skeleton"
        )
    model.quantlens_source = dict(source)
    return model


def call_factory(
    path: str,
    kwargs: Mapping,
    error_cls: type[Exception],
    *,
    name: str,
    hint: str,
    origin: str | os.PathLike | None = None,
) -> Any:
    """Import the function ``path`` names (see :func:`import_factory`) and call it with
    ``kwargs``; a failure to import it or any error the call raises becomes one ``error_cls``
    on one line.

    Args:
        path: ``"package.module:function"`` or ``"path/to/file.py:function"``.
        kwargs: the keyword arguments of the call.
        error_cls: the error raised on failure (a :class:`~quantlens.errors.QuantlensError`).
        name: how the message names the call (``"make()"``, ``"the model factory 'pkg:make'"``).
        hint: what to do about it, the end of the message.
        origin: the file the path came from, the start of the message.

    Returns:
        Whatever the function returns.

    Example:
        >>> call_factory(
        ...     "torch.nn:Identity", {}, InputError, name="torch.nn:Identity()", hint="give another"
        ... )
        Identity()
    """
    where = f"{origin}: " if origin is not None else ""
    try:
        factory = import_factory(path)
    except (ImportError, AttributeError, OSError, SyntaxError) as exc:
        raise error_cls(
            f"{where}cannot import {path!r} ({type(exc).__name__}: {error_line(exc)}); {hint}"
        ) from exc
    try:
        return factory(**kwargs)
    except Exception as exc:  # the factory is user code: any error it raises
        raise error_cls(
            f"{where}calling {name} failed ({type(exc).__name__}: {error_line(exc)}); {hint}"
        ) from exc


def import_factory(path: str) -> Any:
    """The object ``path`` names: ``"package.module:function"`` (imported from the Python
    path) or ``"path/to/file.py:function"`` (that file run as a module, once per process).

    Args:
        path: the spec; the part after the last ``:`` is the attribute.

    Returns:
        The attribute (a callable, for a factory).

    Raises:
        ImportError, AttributeError, OSError, SyntaxError: as importing it raises them.

    Example:
        >>> import_factory("torch.nn:Identity")
        <class 'torch.nn.modules.linear.Identity'>
    """
    module_name, _, attr = path.rpartition(":")
    if not module_name.endswith(".py"):
        return getattr(importlib.import_module(module_name), attr)
    file = os.path.abspath(module_name)
    name = "quantlens_user_" + hashlib.sha256(file.encode()).hexdigest()[:16]
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"{file} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return getattr(sys.modules[name], attr)
