"""Turning a name or a path into a model: :func:`load_model` and :func:`resolve_model`.

A spec is one of the forms of the registry (:func:`model_forms`), tried in order:

- ``zoo``: a zoo model name (``digits-cnn``, ``minilm``, ...);
- ``checkpoint``: a folder written by ``ql.save`` (registered by :mod:`quantlens.api`);
- ``float``: a folder of ``model.safetensors`` (a float state dict) and ``source.json``
  (how to rebuild the model, as a checkpoint records it);
- ``hf``: a Hugging Face model folder, loaded offline with ``transformers.AutoModel``;
- ``factory``: ``package.module:function`` or ``path/to/file.py:function``, called with no
  arguments: it runs code the spec names, so only with ``trust_code=True``;
- ``pickle``: a ``.pt`` / ``.pth`` file of a whole pickled model: only with
  ``allow_pickle=True`` (unpickling runs code the file names); plain tensors are refused.

To add a form, :func:`register_model_form` a :class:`ModelForm` whose ``order`` puts it
where it belongs (a folder form before ``hf``, whose ``config.json`` many folders have).

Example:
    >>> model = ql.load_model("digits-cnn")
    >>> source = ql.resolve_model("my_models.py:make_net", trust_code=True)
    >>> source.kind, source.data
    ('factory', None)
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from quantlens import zoo
from quantlens.errors import (
    InputError,
    UnknownNameError,
    UntrustedCodeError,
    error_line,
    require,
    shorten,
)
from quantlens.files import path_kind
from quantlens.sources.recorded import (
    SOURCE_FILE,
    WEIGHTS_FILE,
    build_skeleton,
    call_factory,
    load_float_folder,
)

MAX_FACTORY = 1000  # characters: no module:function name is longer
PICKLE_SUFFIXES = (".pt", ".pth")


@dataclass(frozen=True)
class LoadOptions:
    """What a spec may do while it loads (see :func:`resolve_model`)."""

    trust_code: bool = False
    allow_pickle: bool = False


@dataclass(frozen=True)
class ModelForm:
    """One form a model spec can take.

    Attributes:
        kind: the :attr:`ModelSource.kind` of the models it gives.
        description: how error messages name it (``"a Hugging Face model folder"``;
            ``{zoo}`` becomes the zoo's model names).
        claims: ``claims(spec, path, path_kind)``: whether ``spec`` has this form.
        load: ``load(spec, options)``: the model (eval mode); errors are QuantlensErrors.
        order: where it is tried (lower first).
        marker: the file that marks a folder of this form, named when a folder is none.
    """

    kind: str
    description: str
    claims: Callable[[str, Path, str | None], bool]
    load: Callable[[str, LoadOptions], nn.Module]
    order: int
    marker: str | None = None


@dataclass(frozen=True)
class ModelSource:
    """A model and what its spec said about it.

    Attributes:
        model: the ``nn.Module`` (eval mode).
        spec: the spec it was loaded from.
        kind: the form of the spec (``"zoo"``, ``"checkpoint"``, ``"hf"``, ...).
        zoo: the zoo name when ``kind == "zoo"``, else None.
        data: the zoo data set the model runs on (a zoo model, or a checkpoint or float
            folder of one), else None.
    """

    model: nn.Module = field(repr=False)
    spec: str
    kind: str
    zoo: str | None = None
    data: str | None = None

    def float_source(self, *, trust_code: bool = False) -> ModelSource:
        """The float model this one was quantized from: itself unless it is a checkpoint,
        whose recorded zoo model (with its trained weights) or factory is built again.

        Args:
            trust_code: allow calling the ``module:function`` factory the checkpoint records.

        Returns:
            A :class:`ModelSource` of the float model.

        Raises:
            InputError: a checkpoint that records neither a zoo model nor a factory.
            UntrustedCodeError: it records a factory and ``trust_code`` is False.

        Example:
            >>> resolve_model("ckpt/").float_source().kind
            'zoo'
        """
        if self.kind != "checkpoint":
            return self
        source = getattr(self.model, "quantlens_source", None) or {}
        name = source.get("zoo")
        if isinstance(name, str) and name in zoo.list_models():
            return ModelSource(zoo.load_model(name), name, "zoo", name, _data_of(name))
        if source.get("kind") == "factory":
            model = build_skeleton(source, trust_code=trust_code)
            return ModelSource(model.eval(), str(source.get("path")), "factory")
        raise InputError(
            f"{shorten(self.spec)} holds a quantized model whose float weights quantlens cannot "
            "rebuild; give the float model (a zoo name, a Hugging Face folder or module:factory)"
        )


_FORMS: list[ModelForm] = []


def register_model_form(form: ModelForm) -> ModelForm:
    """Add a form of model spec (replacing one of the same kind); tried by ``form.order``.

    Returns:
        ``form``.

    Example:
        >>> register_model_form(ModelForm("onnx", "an .onnx file", is_onnx, load_onnx, 55))
    """
    _FORMS[:] = sorted([f for f in _FORMS if f.kind != form.kind] + [form], key=lambda f: f.order)
    return form


def model_forms() -> list[ModelForm]:
    """The registered forms, in the order they are tried."""
    return list(_FORMS)


def forms_text() -> str:
    """The accepted forms as one phrase for error messages."""
    names = [f.description.format(zoo=", ".join(zoo.list_models())) for f in _FORMS]
    return ", ".join(names[:-1]) + f", or {names[-1]}" if len(names) > 1 else "".join(names)


def resolve_model(
    spec: str | os.PathLike,
    *,
    trust_code: bool = False,
    allow_pickle: bool = False,
    kind: str | None = None,
) -> ModelSource:
    """Build the model ``spec`` names, and say what it is.

    Args:
        spec: a zoo name, a checkpoint folder, a float folder, a Hugging Face folder,
            ``module:function`` / ``file.py:function``, or a pickled ``.pt`` model (see the
            module docstring).
        trust_code: allow calling a ``module:function``: the one the spec names, or the
            factory a checkpoint or float folder records. Hugging Face and zoo models never
            need it.
        allow_pickle: allow unpickling a ``.pt`` / ``.pth`` model file (runs code it names).
        kind: load with this form without asking which form ``spec`` has (its errors are
            that form's), e.g. ``"checkpoint"``.

    Returns:
        A :class:`ModelSource`.

    Raises:
        UnknownNameError: ``spec`` has none of the forms (the message lists them).
        InputError: a folder or file of none of the forms, or a factory that fails.
        UntrustedCodeError: it would run code without ``trust_code`` / ``allow_pickle``.
        MissingDependencyError: a Hugging Face folder without transformers installed.

    Example:
        >>> resolve_model("digits-cnn").data
        'digits'
    """
    spec = os.fspath(spec)
    options = LoadOptions(trust_code=trust_code, allow_pickle=allow_pickle)
    path = Path(spec)
    found = path_kind(path)
    if kind is not None:
        forms = [f for f in _FORMS if f.kind == kind]
        if not forms:
            kinds = ", ".join(f.kind for f in _FORMS)
            raise UnknownNameError(f"unknown model form {kind!r}; valid forms: {kinds}")
        return _source(forms[0], spec, options)
    for form in _FORMS:
        if form.claims(spec, path, found):
            return _source(form, spec, options)
    forms = forms_text()
    if found == "dir":
        markers = [f.marker for f in _FORMS if f.marker]
        raise InputError(
            f"{shorten(path)} is a folder with no {', '.join(markers[:-1])} or {markers[-1]}; "
            f"give {forms}"
        )
    if found is not None:
        raise InputError(f"{shorten(path)} is a file; give {forms}")
    raise UnknownNameError(f"unknown model {shorten(repr(spec))}; give {forms}")


def load_model(
    spec: str | os.PathLike, *, trust_code: bool = False, allow_pickle: bool = False
) -> nn.Module:
    """The model ``spec`` names, in eval mode (:func:`resolve_model` says more about it).

    Args:
        spec: a zoo name, a ``ql.save`` checkpoint folder, a float folder
            (``model.safetensors`` + ``source.json``), a Hugging Face model folder,
            ``package.module:function`` or ``path/to/file.py:function``, or a pickled
            ``.pt`` model.
        trust_code: allow calling the ``module:function`` the spec names or a checkpoint
            records.
        allow_pickle: allow unpickling a ``.pt`` model file.

    Returns:
        The ``nn.Module``.

    Raises:
        UnknownNameError, InputError, UntrustedCodeError, MissingDependencyError: as
        :func:`resolve_model`.

    Example:
        >>> ql.load_model("digits-cnn")(torch.rand(1, 1, 8, 8)).shape
        torch.Size([1, 10])
    """
    return resolve_model(spec, trust_code=trust_code, allow_pickle=allow_pickle).model


def is_factory_spec(spec: str) -> bool:
    """Whether ``spec`` has the ``module:function`` / ``file.py:function`` form (nothing is
    imported; a zoo name or an existing path never has it).

    Example:
        >>> is_factory_spec("torch.nn:Identity"), is_factory_spec("digits-cnn")
        (True, False)
    """
    return (
        ":" in spec
        and len(spec) <= MAX_FACTORY
        and spec not in zoo.list_models()
        and path_kind(Path(spec)) is None
    )


def _source(form: ModelForm, spec: str, options: LoadOptions) -> ModelSource:
    model = form.load(spec, options)
    if form.kind == "zoo":
        return ModelSource(model, spec, "zoo", spec, _data_of(spec))
    recorded = (getattr(model, "quantlens_source", None) or {}).get("zoo")
    data = _data_of(recorded) if form.kind in ("checkpoint", "float") else None
    return ModelSource(model, spec, form.kind, None, data)


def _data_of(name) -> str | None:
    return zoo.default_dataset_for(name) if name in zoo.list_models() else None


# --- the built-in forms ---------------------------------------------------------------------


def _is_folder_with(*names: str) -> Callable[[str, Path, str | None], bool]:
    return lambda spec, path, kind: kind == "dir" and all((path / n).is_file() for n in names)


def _load_hf(spec: str, options: LoadOptions) -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = require("transformers", "hf")
    try:
        model = transformers.AutoModel.from_pretrained(spec, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"transformers cannot load {spec}: {error_line(exc)}") from exc
    return model.eval()


def _load_factory(spec: str, options: LoadOptions) -> nn.Module:
    if not options.trust_code:
        raise UntrustedCodeError(
            f"{shorten(spec)} builds its model by calling that function, which runs code the spec "
            "names; pass trust_code=True if you trust it"
        )
    model = call_factory(
        spec,
        {},
        InputError,
        name=f"{spec}()",
        hint="give package.module:function on the Python path (or path/to/file.py:function), "
        "one that builds the model with no arguments",
    )
    if not isinstance(model, nn.Module):
        raise InputError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    if getattr(model, "quantlens_source", None) is None:
        module, _, attr = spec.rpartition(":")
        path = f"{os.path.abspath(module)}:{attr}" if module.endswith(".py") else spec
        model.quantlens_source = {"kind": "factory", "path": path, "kwargs": {}}
    return model.eval()


def _load_pickle(spec: str, options: LoadOptions) -> nn.Module:
    name = shorten(spec)
    if not options.allow_pickle:
        try:
            torch.load(spec, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:  # beyond plain tensors: a pickled model or worse
            raise UntrustedCodeError(
                f"{name} is a pickled file; unpickling runs code the file names, so pass "
                "allow_pickle=True only if you trust it (or give module:factory)"
            ) from exc
        except Exception as exc:  # a damaged archive: torch raises RuntimeError and others
            raise InputError(f"{name} cannot be read ({error_line(exc)})") from exc
        raise InputError(
            f"{name} holds tensors (a state dict?), not a model; build the model with "
            "module:factory and load_state_dict them into it"
        )
    try:
        model = torch.load(spec, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling user objects: any error they raise
        raise InputError(f"{name} cannot be unpickled ({error_line(exc)})") from exc
    if not isinstance(model, nn.Module):
        raise InputError(f"{name} holds a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


for _form in (
    ModelForm(
        "zoo",
        "a zoo model ({zoo})",
        lambda spec, path, kind: spec in zoo.list_models(),
        lambda spec, options: zoo.load_model(spec),
        10,
    ),
    ModelForm(
        "float",
        f"a float model folder ({WEIGHTS_FILE} + {SOURCE_FILE})",
        _is_folder_with(SOURCE_FILE, WEIGHTS_FILE),
        lambda spec, options: load_float_folder(spec, trust_code=options.trust_code),
        30,
        marker=SOURCE_FILE,
    ),
    ModelForm(
        "hf",
        "a Hugging Face model folder",
        _is_folder_with("config.json"),
        _load_hf,
        40,
        "config.json",
    ),
    ModelForm(
        "factory",
        "module:factory (or file.py:factory)",
        lambda spec, path, kind: is_factory_spec(spec),
        _load_factory,
        50,
    ),
    ModelForm(
        "pickle",
        "a pickled model file (.pt)",
        lambda spec, path, kind: kind == "file" and path.suffix.lower() in PICKLE_SUFFIXES,
        _load_pickle,
        60,
    ),
):
    register_model_form(_form)
